"""Shardings over a one-axis mesh of all devices, with AlgoPerf's names (``jax_sharding_utils``).

Every array of a trial lives on the mesh ``Mesh(jax.devices(), ('batch',))``: parameters,
optimizer and model state replicated on every device, batches split along their leading
(example) axis. ``jax.jit`` then partitions a training step over the devices itself
(data parallelism without ``pmap``), and a submission written for AlgoPerf's jit generation
(``from algoperf import jax_sharding_utils``) finds the functions it calls. Two generations of
the API exist and both work: ``get_replicate_sharding()`` / ``get_batch_dim_sharding()``, and
``get_replicate_sharding(mesh)`` / ``get_batch_sharding(mesh)`` with an explicit mesh.
"""
import functools
from typing import Any, Optional

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "batch"


@functools.lru_cache(maxsize=None)
def _mesh(devices: tuple) -> Mesh:
    return Mesh(list(devices), (AXIS,))


def get_mesh(devices=None) -> Mesh:
    """The one-axis mesh of every device this process sees (or of ``devices``)."""
    return _mesh(tuple(devices if devices is not None else jax.devices()))


def get_replicate_sharding(mesh: Optional[Mesh] = None) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh or get_mesh(), P())


def get_batch_dim_sharding(mesh: Optional[Mesh] = None) -> NamedSharding:
    """Split along the leading (example) axis over the mesh's devices."""
    return NamedSharding(mesh or get_mesh(), P(AXIS))


get_batch_sharding = get_batch_dim_sharding  # AlgoPerf's other name for it


def replicate(tree: Any, mesh: Optional[Mesh] = None) -> Any:
    """``tree``'s arrays copied to every device."""
    return jax.device_put(tree, get_replicate_sharding(mesh))


def shard_along_batch_dim(tree: Any, mesh: Optional[Mesh] = None) -> Any:
    """``tree``'s arrays split along their leading axis (its size a multiple of the number of
    devices)."""
    return jax.device_put(tree, get_batch_dim_sharding(mesh))


def disp_shard_info(tree: Any) -> None:
    """Print each leaf's shape and sharding (a debugging aid of AlgoPerf's)."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        print(jax.tree_util.keystr(path), getattr(leaf, "shape", None),
              getattr(leaf, "sharding", None))
