"""MNIST in Flax (linen): the 784-128-10 sigmoid MLP of ``workloads/mnist/pytorch.py``.

Function (N images)::

    x [N, 28, 28] -> flatten [N, 784] -> Dense_0 [N, 128] -> sigmoid -> Dense_1 [N, 10] logits

Parameter tree (AlgoPerf's Flax MNIST model ``_Model`` uses the same two auto-named
``nn.Dense`` layers, so its names are ours; 101,770 parameters)::

    Dense_0/kernel [784, 128]   Dense_0/bias [128]
    Dense_1/kernel [128, 10]    Dense_1/bias [10]

Init: PyTorch's ``nn.Linear`` default, so both frameworks start from the same distribution
(AlgoPerf's Flax model keeps Flax's lecun-normal / zero-bias default instead): for a layer
with fan_in inputs, kernel and bias are both U(-1/sqrt(fan_in), 1/sqrt(fan_in)); PyTorch's
``kaiming_uniform_(a=sqrt(5))`` bound is gain * sqrt(3 / fan_in) with gain^2 = 2 / (1 + 5),
i.e. 1/sqrt(fan_in), which is ``variance_scaling(1/3, 'fan_in', 'uniform')``.

The model has no dropout and no normalisation: ``train`` and ``dropout_rate`` are accepted
for the common call signature and ignored, and there is no ``batch_stats`` collection.
"""
import math
from typing import Any, Dict, Mapping, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

# PyTorch nn.Linear's weight init: U(-b, b) with b = 1 / sqrt(fan_in).
torch_linear_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_linear_bias_init(fan_in: int):
    """PyTorch nn.Linear's bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)). A bias init only
    sees the bias shape, so fan_in is bound here. (``jax.nn.initializers.uniform`` is
    U(0, scale), not symmetric, hence the explicit draw.)"""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class MLP(nn.Module):
    """[N, 28, 28] normalised images -> [N, num_classes] logits (see the module docstring)."""

    hidden: int = 128
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, dropout_rate: float = 0.0) -> jax.Array:
        del train, dropout_rate  # No dropout, no batch statistics.
        x = x.reshape((x.shape[0], -1))  # [N, 784], row-major like torch's nn.Flatten
        x = nn.Dense(self.hidden, kernel_init=torch_linear_kernel_init,
                     bias_init=torch_linear_bias_init(x.shape[-1]))(x)
        x = nn.sigmoid(x)
        return nn.Dense(self.num_classes, kernel_init=torch_linear_kernel_init,
                        bias_init=torch_linear_bias_init(self.hidden))(x)


# PyTorch MLP: net = Sequential(Flatten, Linear, Sigmoid, Linear), so the Linears are net.1, net.3.
_TORCH_TO_FLAX = {"net.1": "Dense_0", "net.3": "Dense_1"}


def _numpy(value: Any) -> np.ndarray:
    """A torch tensor (any device) or array-like -> a float32 numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def params_from_torch(state_dict: Mapping[str, Any]) -> Tuple[Dict, Dict]:
    """``MLP().state_dict()`` (PyTorch) -> ``(params, batch_stats)`` for this Flax ``MLP``.

    Linear weights are [out, in] and act as ``x @ W.T``; Dense kernels are [in, out] and act as
    ``x @ K``, so K = W.T. ``batch_stats`` is empty (the model has no norms); it is returned for
    the same interface as the other families. Unknown keys raise, so a state dict of another
    model is never half-converted.
    """
    params: Dict[str, Dict[str, jax.Array]] = {}
    for key, value in state_dict.items():
        module, _, leaf = key.rpartition(".")
        if module not in _TORCH_TO_FLAX or leaf not in ("weight", "bias"):
            raise KeyError(f"unexpected key {key!r} in an MNIST MLP state_dict")
        array = _numpy(value)
        name = "kernel" if leaf == "weight" else "bias"
        params.setdefault(_TORCH_TO_FLAX[module], {})[name] = jnp.asarray(
            array.T if leaf == "weight" else array)
    return params, {}
