"""NAdamW in optax: AlgoPerf's rule (the formulas of ``submissions.optimizers.nadamw``), built
from optax pieces where optax has them.

``scale_by_nadam`` is the one piece optax lacks: ``optax.scale_by_adam(nesterov=True)`` bias-
corrects the look-ahead's two terms separately (b1 m_t / (1 - b1^(t+1)) + (1 - b1) g /
(1 - b1^t)), AlgoPerf's NAdamW corrects their sum by 1 - b1^t. At step t = 1, 2, ...:

    m_t = b1 m_{t-1} + (1 - b1) g,     v_t = b2 v_{t-1} + (1 - b2) g^2
    u   = [(b1 m_t + (1 - b1) g) / (1 - b1^t)] / (sqrt(v_t / (1 - b2^t)) + eps)

``nadamw`` = scale_by_nadam -> add_decayed_weights(wd) -> scale_by_learning_rate(lr), i.e.
p <- p - lr (u + wd p), the PyTorch optimizer's decoupled decay.
"""
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax


def scale_by_nadam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
                   ) -> optax.GradientTransformation:
    """AlgoPerf's NAdam direction (module docstring); state ``optax.ScaleByAdamState``."""

    def init(params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros,
                                      nu=jax.tree_util.tree_map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        mu = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, updates)
        count = state.count + 1
        # Bias corrections in the parameters' precision (float32 here would cost float64
        # runs 1e-7 relative on every step).
        t = count.astype(jax.tree_util.tree_leaves(mu)[0].dtype)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        direction = jax.tree_util.tree_map(
            lambda m, v, g: ((b1 * m + (1 - b1) * g) / c1) / (jnp.sqrt(v / c2) + eps),
            mu, nu, updates)
        return direction, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


def nadamw(learning_rate: Any, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
           weight_decay: float = 0.0, weight_decay_mask: Optional[Any] = None
           ) -> optax.GradientTransformation:
    """AlgoPerf's NAdamW; ``learning_rate`` a float or an optax schedule."""
    return optax.chain(scale_by_nadam(b1, b2, eps),
                       optax.add_decayed_weights(weight_decay, weight_decay_mask),
                       optax.scale_by_learning_rate(learning_rate))
