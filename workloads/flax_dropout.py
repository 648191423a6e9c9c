"""Inverted dropout whose rate may be a traced value, for the Flax models.

    y = m * x / (1 - p),   m ~ Bernoulli(1 - p) elementwise,   y = x when deterministic

AlgoPerf's jit-generation submissions pass ``dropout_rate`` into their jitted step as an
argument, so it reaches the model as a tracer; ``flax.linen.Dropout`` branches on
``rate == 0.0`` in Python and cannot take one. This module draws the same mask from the same
``'dropout'`` key as ``flax.linen.Dropout`` (so a float rate gives the same output) and skips
the draw only when the rate is a Python 0 or 1.
"""
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn


class Dropout(nn.Module):
    rate: Any = 0.0                       # float or a traced scalar
    deterministic: Optional[bool] = None

    @nn.compact
    def __call__(self, inputs: jax.Array, deterministic: Optional[bool] = None) -> jax.Array:
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        python_rate = isinstance(self.rate, (int, float))
        if deterministic or (python_rate and self.rate == 0.0):
            return inputs
        if python_rate and self.rate == 1.0:
            return jnp.zeros_like(inputs)  # as flax: no draw, no 0/0 in the gradient
        # A Python rate keeps Python's 1 - p (flax's rounding); a traced one is float32.
        keep = 1.0 - self.rate if python_rate else 1.0 - jnp.asarray(self.rate, jnp.float32)
        mask = jax.random.bernoulli(self.make_rng("dropout"), p=keep, shape=inputs.shape)
        # A traced rate of 1 drops every unit; dividing by 1 instead of 0 keeps the gradient
        # of the unselected branch finite.
        scale = keep if python_rate else jnp.where(keep > 0, keep, 1.0)
        return jax.lax.select(mask, inputs / scale, jnp.zeros_like(inputs))
