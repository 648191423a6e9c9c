"""How a parameter is cut into Shampoo blocks: merge small dimensions, then block large ones.

A parameter of shape (d_1, ..., d_n) is first reshaped by ``merge_dims`` (as Distributed
Shampoo's ``use_merge_dims``): adjacent dimensions are multiplied together, left to right,
while the product stays <= ``max_dim``, and size-1 dimensions disappear. A conv kernel
(64, 64, 3, 3) with max_dim 1024 becomes (64, 576): two factors of 64x64 and 576x576 instead
of four (64, 64, 3, 3), and the 3x3 factors (which carry almost no information) are gone.

``block_slices`` then cuts every merged dimension into chunks of at most ``max_dim``:
(1152, 384) with max_dim 1024 gives the blocks [0:1024, 0:384] and [1024:1152, 0:384]. Each
block is preconditioned on its own (its own k factors of sizes <= max_dim), which bounds the
cost of an eigendecomposition at O(max_dim^3) whatever the layer's size.
"""
import itertools
from typing import List, Sequence, Tuple

import torch

Shape = Tuple[int, ...]
BlockIndex = Tuple[slice, ...]


def merge_dims(shape: Sequence[int], max_dim: int) -> Shape:
    """Greedy left-to-right merge of adjacent dims whose product stays <= ``max_dim``.

    Size-1 dims are dropped (a (1, 384) row is the vector (384,)); an all-ones shape (a
    scalar parameter) merges to ().
    """
    merged: List[int] = []
    for d in shape:
        if d == 1:
            continue
        if merged and merged[-1] * d <= max_dim:
            merged[-1] *= d
        else:
            merged.append(d)
    return tuple(merged)


def block_slices(shape: Sequence[int], max_dim: int) -> List[BlockIndex]:
    """Index tuples of the blocks of a tensor of ``shape``: every dim cut into <= max_dim
    chunks; blocks in row-major order of their chunk indices."""
    per_dim = [[slice(start, min(start + max_dim, d)) for start in range(0, d, max_dim)]
               for d in shape]
    return list(itertools.product(*per_dim))


def blocks_of(x: torch.Tensor, index: Sequence[BlockIndex]) -> List[torch.Tensor]:
    """Views of ``x`` (already in its merged shape) at the block ``index`` tuples."""
    return [x[i] for i in index]
