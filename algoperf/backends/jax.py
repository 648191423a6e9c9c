"""JAX backend: the device mesh, a clock that waits for the device, orbax checkpoints, seeding.

One process drives every local device: parameters and state are replicated over the one-axis
mesh of ``algoperf.jax_sharding_utils`` and batches are split along it, so ``jax.jit``
parallelises a step over the devices. (Several processes would need ``jax.distributed``;
the collectives below already go through ``multihost_utils`` for that case.)

Checkpoint of a trial (in its folder)::

    checkpoint_jax.json              {"dir": "checkpoint_jax/<k>"}   the current one, replaced
                                     atomically (os.replace) once <k> is complete
    checkpoint_jax/<k>/arrays/       orbax: params, model_state, the optimizer state's arrays
    checkpoint_jax/<k>/extra.pkl     the harness's extra, RNG states, the optimizer state's
                                     other picklable leaves

so a process killed at any moment leaves the previous checkpoint or the new one. The optimizer
state's tree is flattened: array leaves go to orbax, other picklable leaves to the pickle, and
the rest (``opt_update_fn`` and other closures) comes back from the live state that
``init_optimizer_state`` built, as in AlgoPerf; a leaf that is none of these is reported.
"""
import json
import logging
import os
import pickle
import random
import shutil
from typing import Any, Dict, List, Tuple

import numpy as np

from algoperf import clocks, logger_utils
from algoperf.backends import jax_compat, jax_layout
from algoperf.checkpoint_state import CheckpointError

POINTER = "checkpoint_jax.json"
FOLDER = "checkpoint_jax"


def _is_array(leaf: Any) -> bool:
    import jax
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic))


class JaxBackend:
    name = "jax"
    use_ddp = False
    checkpoint_name = POINTER

    def __init__(self):
        import jax
        self._jax = jax
        self.rank = jax.process_index()
        # How arrays reach the submission (``jax_layout``); set per submission by the run.
        self.layout = jax_layout.JIT
        self._source_files: List[str] = []
        _quiet_orbax()
        jax_compat.restore_removed_names()

    def use_layout_for(self, flag: str, source_files: List[str]) -> str:
        """Serve the submission whose own code is ``source_files`` the layout of
        ``--jax_layout`` (``auto``: the one detected in that code)."""
        self.layout = jax_layout.resolve(flag, source_files)
        self._source_files = list(source_files)
        return self.layout

    def explain_failure(self, error: BaseException) -> str:
        """Why a trial failed when the layout and the submission's generation disagree."""
        del error
        return jax_layout.mismatch(self._source_files, self.layout) or "" \
            if self._source_files else ""

    def init(self) -> None:
        """Nothing to join: one process drives every local device."""

    @property
    def world_size(self) -> int:
        return self._jax.process_count()

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    @property
    def device(self):
        return self._jax.devices()[0]

    @property
    def num_devices(self) -> int:
        return self._jax.device_count()

    @property
    def has_accelerator(self) -> bool:
        return self._jax.default_backend() != "cpu"

    @property
    def graph_batch_shards(self) -> int:
        """Graph batches come packed per device (a graph never spans two)."""
        return self.num_devices

    def seed(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)

    # What ``clock`` reads (algoperf.clocks); the runner sets the trial's.
    read_time = staticmethod(clocks.reader(clocks.WALL))

    def clock(self, *wait_for) -> float:
        """``read_time()`` once the arrays of ``wait_for`` are computed (JAX dispatches work
        asynchronously: without the wait, a step's time would be counted at the next eval)."""
        if wait_for:
            self._jax.block_until_ready(wait_for)
        return self.read_time()

    def barrier(self) -> None:
        if self.world_size > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("algoperf")

    def all_sum(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if self.world_size == 1:
            return values
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(values)).sum(axis=0)

    def all_gather(self, value: np.ndarray) -> List[np.ndarray]:
        if self.world_size == 1:
            return [value]
        from jax.experimental import multihost_utils
        return list(np.asarray(multihost_utils.process_allgather(value)))

    def info(self) -> Dict[str, Any]:
        devices = self._jax.devices()
        return {"framework": "jax", "jax_version": self._jax.__version__,
                "jax_layout": self.layout, "world_size": self.world_size, "device": str(devices[0]),
                "devices": [str(d) for d in devices], "num_devices": len(devices)}

    # --- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self, path: str, params, model_state, optimizer_state,
                        extra: Dict[str, Any]) -> List[Tuple[str, str]]:
        """``path``: the trial folder's ``checkpoint_jax.json``. Returns the optimizer state's
        leaves that could not be saved, as ``(path, why)``."""
        import orbax.checkpoint as ocp
        trial_dir = os.path.dirname(path)
        leaves, treedef = self._jax.tree_util.tree_flatten_with_path(optimizer_state)
        arrays, others, unsaved = {}, {}, []
        for i, (key_path, leaf) in enumerate(leaves):
            if _is_array(leaf):
                arrays[str(i)] = leaf
            elif callable(leaf):
                continue  # an update function: rebuilt by init_optimizer_state
            else:
                try:
                    others[i] = pickle.dumps(leaf)
                except Exception as error:  # noqa: BLE001 - whatever pickle raises
                    unsaved.append((f"optimizer_state{self._jax.tree_util.keystr(key_path)}",
                                    f"{type(leaf).__name__} cannot be pickled ({error})"))
        folder = _new_folder(trial_dir)
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(os.path.join(os.path.abspath(folder), "arrays"),
                          {"params": params, "model_state": model_state,
                           "optimizer_arrays": arrays}, force=True)
        checkpointer.wait_until_finished()
        blob = {"extra": extra, "optimizer_others": others, "num_leaves": len(leaves),
                "treedef": str(treedef),
                "rng": {"python": random.getstate(), "numpy": np.random.get_state()}}
        with open(os.path.join(folder, "extra.pkl.tmp"), "wb") as f:
            pickle.dump(blob, f)
        os.replace(os.path.join(folder, "extra.pkl.tmp"), os.path.join(folder, "extra.pkl"))
        logger_utils.write_json(path, {"dir": os.path.relpath(folder, trial_dir)})
        for name in os.listdir(os.path.dirname(folder)):  # the previous one, and any a kill
            if name != os.path.basename(folder):          # left half-written
                shutil.rmtree(os.path.join(os.path.dirname(folder), name), ignore_errors=True)
        return unsaved

    def load_checkpoint(self, path: str, params, model_state, optimizer_state
                        ) -> Tuple[Any, Any, Any, Dict[str, Any]]:
        import orbax.checkpoint as ocp
        folder = _current_folder(os.path.dirname(path))
        if folder is None:
            raise CheckpointError(f"{path} points at no checkpoint folder")
        with open(os.path.join(folder, "extra.pkl"), "rb") as f:
            blob = pickle.load(f)
        leaves, treedef = self._jax.tree_util.tree_flatten(optimizer_state)
        if len(leaves) != blob["num_leaves"]:
            raise CheckpointError(
                f"{folder}: the optimizer state has {len(leaves)} leaves, the checkpoint "
                f"{blob['num_leaves']} (init_optimizer_state builds another structure now)")
        target = {"params": params, "model_state": model_state,
                  "optimizer_arrays": {str(i): leaf for i, leaf in enumerate(leaves)
                                       if _is_array(leaf)}}
        restored = ocp.StandardCheckpointer().restore(
            os.path.join(os.path.abspath(folder), "arrays"), target)
        new_leaves = []
        for i, leaf in enumerate(leaves):
            if str(i) in restored["optimizer_arrays"]:
                new_leaves.append(restored["optimizer_arrays"][str(i)])
            elif i in blob["optimizer_others"]:
                new_leaves.append(pickle.loads(blob["optimizer_others"][i]))
            else:
                new_leaves.append(leaf)
        random.setstate(blob["rng"]["python"])
        np.random.set_state(blob["rng"]["numpy"])
        return (restored["params"], restored["model_state"],
                self._jax.tree_util.tree_unflatten(treedef, new_leaves), blob["extra"])


class _DropOrbaxInfo(logging.Filter):
    """orbax reports every save at INFO through absl; the trial log keeps its warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "orbax" not in record.pathname


def _quiet_orbax() -> None:
    logger = logging.getLogger("absl")
    if not any(isinstance(f, _DropOrbaxInfo) for f in logger.filters):
        logger.addFilter(_DropOrbaxInfo())


def _current_folder(trial_dir: str):
    try:
        with open(os.path.join(trial_dir, POINTER)) as f:
            folder = os.path.join(trial_dir, json.load(f)["dir"])
    except (OSError, ValueError, KeyError):
        return None
    return folder if os.path.isdir(folder) else None


def _new_folder(trial_dir: str) -> str:
    root = os.path.join(trial_dir, FOLDER)
    os.makedirs(root, exist_ok=True)
    taken = [int(n) for n in os.listdir(root) if n.isdigit()]
    folder = os.path.join(root, str(max(taken) + 1 if taken else 0))
    os.makedirs(folder)
    return folder
