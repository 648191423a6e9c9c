"""K-FAC-expand and K-FAC-reduce (Eschenhagen et al., NeurIPS 2023, arXiv:2311.00636).

``factors``: the Kronecker factors of one layer from its inputs and output gradients (pure
functions, the loss-scale convention in its docstring). ``inverse``: damped inverses
(pi-heuristic / exact eigendecomposition). ``optimizer``: the ``KFAC`` torch optimizer.
"""
from submissions.optimizers.kfac.factors import (append_ones, conv2d_inputs,
                                                 conv2d_output_grads, expand_factors,
                                                 expand_factors_segments, linear_inputs,
                                                 linear_output_grads, reduce_factors,
                                                 reduce_factors_segments)
from submissions.optimizers.kfac.optimizer import KFAC

__all__ = ["KFAC", "append_ones", "conv2d_inputs", "conv2d_output_grads", "expand_factors",
           "expand_factors_segments", "linear_inputs", "linear_output_grads",
           "reduce_factors", "reduce_factors_segments"]
