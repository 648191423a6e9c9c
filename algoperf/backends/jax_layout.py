"""The two generations of AlgoPerf's JAX interface, and which one a submission is written for.

    jit    AlgoPerf today and the newer self-tuning submissions. Global arrays: parameters,
           model and optimizer state replicated over the one-axis mesh
           (``algoperf.jax_sharding_utils``), batches split along their leading axis. The
           submission jits its step (``in_shardings`` / ``out_shardings``); no collectives.
    pmap   The v0.5 leaderboard and AlgoPerf's baselines before the move to jit. Parameters and
           model state carry a leading device axis, ``[D, ...]``
           (``flax.jax_utils.replicate``); training batches arrive as ``[D, B/D, ...]``
           (ogbg: one ``GraphsTuple`` per device, stacked); the submission ``jax.pmap``s its
           step with ``axis_name='batch'`` and averages with ``lax.pmean``. Per-device
           BatchNorm statistics are averaged over the devices before an eval, as AlgoPerf's
           pmap workloads do.

The harness serves the layout the trial runs in (``--jax_layout``); ``auto`` (the default)
reads the submission's own code (the submission file and the modules its import brought in
other than the harness's and installed packages', ``submission_loader.source_files``;
comments and strings left out): a use of ``pmap`` or of ``jax_utils.replicate`` means pmap,
anything else jit. Evals, checkpoints and resume work the same in both layouts.
"""
import io
import os
import tokenize
from typing import Iterator, List, Optional, Sequence, Tuple

JIT = "jit"
PMAP = "pmap"
AUTO = "auto"
LAYOUTS = (AUTO, JIT, PMAP)

# (file, line, code) where a submission shows which generation it was written for.
Evidence = Tuple[str, int, str]

def _names(path: str) -> Iterator[Tuple[int, str, str]]:
    """(line, dotted name, the line's code) for every dotted name in ``path``'s code."""
    try:
        with open(path, "rb") as f:
            source = f.read().decode("utf-8", errors="replace")
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (OSError, tokenize.TokenError, SyntaxError, IndentationError):
        return
    dotted: List[str] = []
    for token in tokens:
        if token.type == tokenize.NAME:
            dotted.append(token.string)
            yield token.start[0], ".".join(dotted[-2:]), token.line.strip()
        elif not (token.type == tokenize.OP and token.string == "."):
            dotted = []


def _pmap_strength(name: str) -> int:
    """2: a pmap; 1: flax's replicate (a device axis, but also a leftover in jit code); 0."""
    if name.endswith("pmap"):
        return 2
    return 1 if name == "jax_utils.replicate" else 0


def _is_jit_sharding(name: str) -> bool:
    last = name.split(".")[-1]
    return last in ("jax_sharding_utils", "in_shardings", "out_shardings", "NamedSharding")


def evidence(source_files: Sequence[str]
             ) -> Tuple[Optional[Evidence], Optional[Evidence]]:
    """Where ``source_files`` use pmap and where they shard for jit (None: nowhere).

    A call of ``pmap`` decides. ``jax_utils.replicate`` without one counts only in code that
    does not shard for jit: leaderboard code moved to jit sometimes kept a replicate call."""
    pmap_use = replicate_use = jit_use = None
    for path in source_files:
        for line, name, code in _names(path):
            strength = _pmap_strength(name)
            if strength == 2 and pmap_use is None:
                pmap_use = (path, line, code)
            elif strength == 1 and replicate_use is None:
                replicate_use = (path, line, code)
            if jit_use is None and _is_jit_sharding(name):
                jit_use = (path, line, code)
    if pmap_use is None and jit_use is None:
        pmap_use = replicate_use
    return pmap_use, jit_use


def detect(source_files: Sequence[str]) -> str:
    pmap_use, _ = evidence(source_files)
    return PMAP if pmap_use else JIT


def resolve(flag: str, source_files: Sequence[str]) -> str:
    """The layout a trial runs in: the flag's, or the detected one for ``auto``."""
    if flag not in LAYOUTS:
        raise ValueError(f"--jax_layout={flag!r} is not one of {', '.join(LAYOUTS)}")
    return detect(source_files) if flag == AUTO else flag


def mismatch(source_files: Sequence[str], layout: str) -> Optional[str]:
    """A sentence saying that the submission is written for the other layout, or None."""
    pmap_use, jit_use = evidence(source_files)
    if layout == JIT and pmap_use:
        written_for, found = PMAP, pmap_use
    elif layout == PMAP and not pmap_use:
        written_for, found = JIT, jit_use
    else:
        return None
    where = "no pmap in its code"
    if found is not None:
        path, line, code = found
        shown = os.path.relpath(path) if os.path.abspath(path).startswith(os.getcwd()) else path
        where = f"{shown}:{line}: {code}"
    return (f"the submission is written for AlgoPerf's {written_for} generation ({where}) but "
            f"the trial ran in the {layout} layout (--jax_layout={layout}); run it with "
            f"--jax_layout={written_for} or --jax_layout=auto")


# --- the pmap layout's arrays ----------------------------------------------------------------
def replicate_per_device(tree, devices=None):
    """Each array with a leading device axis, one copy per device of ``devices`` (default:
    all), split along that axis (``jax_utils.replicate``, ``jax.device_put_replicated``)."""
    import jax
    import jax.numpy as jnp

    from algoperf import jax_sharding_utils
    devices = list(devices) if devices is not None else jax.devices()
    sharding = jax_sharding_utils.get_batch_dim_sharding(jax_sharding_utils.get_mesh(devices))
    return jax.tree_util.tree_map(
        lambda x: jax.device_put(jnp.broadcast_to(x, (len(devices),) + jnp.shape(x)), sharding),
        tree)


def split_per_device(tree):
    """``[B, ...]`` -> ``[D, B/D, ...]``, device d holding row d."""
    import jax

    from algoperf import jax_sharding_utils
    sharding = jax_sharding_utils.get_batch_dim_sharding()
    count = jax.device_count()

    def split(x):
        if x.shape[0] % count:
            raise ValueError(f"a batch of {x.shape[0]} does not split over {count} devices")
        return jax.device_put(x.reshape((count, x.shape[0] // count) + tuple(x.shape[1:])),
                              sharding)
    return jax.tree_util.tree_map(split, tree)


def unreplicate_params(tree):
    """Device 0's copy: under pmap every device holds the same parameters."""
    import jax
    return jax.tree_util.tree_map(lambda x: x[0], tree)


def average_over_devices(tree):
    """The mean over the device axis: per-device statistics (BatchNorm's) made one."""
    import jax
    return jax.tree_util.tree_map(lambda x: x.mean(axis=0).astype(x.dtype), tree)
