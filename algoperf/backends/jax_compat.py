"""Names that JAX removed after AlgoPerf's pinned versions, restored for submissions.

AlgoPerf's leaderboard submissions were written against jax 0.4.x, where ``jax.tree_map``,
``jax.tree_leaves`` & co., ``jax.device_put_replicated`` / ``device_put_sharded`` and
``jnp.clip(x, a_min=..., a_max=...)`` still existed; current JAX (this project's) has only
their replacements (``jax.tree.*``, ``jax.device_put`` with a sharding, ``min`` / ``max``).
Restoring the old names as thin aliases of the new functions lets that code run unchanged; a
name JAX still has is never replaced.
"""
import functools
import inspect
from typing import Any, Callable, Dict, Sequence

from algoperf.backends import jax_layout


def _device_put_sharded(shards: Sequence[Any], devices: Sequence[Any]):
    """``shards[i]`` on ``devices[i]``, stacked along a new leading axis."""
    import jax
    import numpy as np

    from algoperf import jax_sharding_utils
    sharding = jax_sharding_utils.get_batch_dim_sharding(jax_sharding_utils.get_mesh(devices))
    return jax.tree_util.tree_map(lambda *leaves: jax.device_put(np.stack(leaves), sharding),
                                  *shards)


def _clip_with_old_keywords(clip: Callable) -> Callable:
    """``jnp.clip`` that also takes jax 0.4's ``a`` / ``a_min`` / ``a_max``."""
    @functools.wraps(clip)
    def compatible_clip(arr=None, min=None, max=None, *, a=None, a_min=None, a_max=None):
        return clip(a if arr is None else arr, a_min if min is None else min,
                    a_max if max is None else max)
    compatible_clip.takes_old_keywords = True
    return compatible_clip


def _removed_names() -> Dict[str, Callable]:
    import jax
    tree = jax.tree_util
    return {"tree_map": tree.tree_map, "tree_leaves": tree.tree_leaves,
            "tree_flatten": tree.tree_flatten, "tree_unflatten": tree.tree_unflatten,
            "tree_structure": tree.tree_structure, "tree_transpose": tree.tree_transpose,
            "device_put_replicated": jax_layout.replicate_per_device,
            "device_put_sharded": _device_put_sharded}


def restore_removed_names() -> None:
    import jax
    for name, function in _removed_names().items():
        if not hasattr(jax, name):
            setattr(jax, name, function)
    if not hasattr(jax.tree_util, "tree_multimap"):  # removed in jax 0.3: the same as tree_map
        jax.tree_util.tree_multimap = jax.tree_util.tree_map
    import jax.numpy as jnp
    if not getattr(jnp.clip, "takes_old_keywords", False) and \
            "a_min" not in inspect.signature(jnp.clip).parameters:
        jnp.clip = _clip_with_old_keywords(jnp.clip)
