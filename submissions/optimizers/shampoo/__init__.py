"""Blocked Shampoo with grafting (Distributed Shampoo's update rule, AlgoPerf v0.5 winner).

``blocking``: merge small dims and cut large ones into blocks. ``roots``: inverse p-th roots
by eigendecomposition (epsilon added to eigenvalues, float64 fallback). ``optimizer``: the
``Shampoo`` torch optimizer.
"""
from submissions.optimizers.shampoo.blocking import block_slices, merge_dims
from submissions.optimizers.shampoo.optimizer import GRAFTING_TYPES, Shampoo
from submissions.optimizers.shampoo.roots import matrix_inverse_root, root_for_order

__all__ = ["GRAFTING_TYPES", "Shampoo", "block_slices", "matrix_inverse_root", "merge_dims",
           "root_for_order"]
