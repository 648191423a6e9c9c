"""The schedules of ``submissions.optimizers.schedules`` as optax schedules (functions of the
update count t = 0, 1, ...), for the JAX baselines: the same formulas, the same numbers."""
import optax

from submissions.optimizers.schedules import warmup_steps_for


def warmup_cosine(peak_lr: float, warmup_steps: int, total_steps: float) -> optax.Schedule:
    """0 -> peak over W steps, then cosine to 0 at T (``schedules.warmup_cosine_lr``)."""
    decay = max(total_steps - warmup_steps, 1)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, peak_lr, max(warmup_steps, 1)),
         optax.cosine_decay_schedule(peak_lr, decay)], [warmup_steps])


def warmup_linear_decay(peak_lr: float, warmup_steps: int, decay_steps: int,
                        end_factor: float) -> optax.Schedule:
    """0 -> peak over W steps, then linear to end_factor * peak over D steps, then constant
    (``schedules.warmup_linear_decay_lr``)."""
    decay = (optax.linear_schedule(peak_lr, peak_lr * end_factor, decay_steps)
             if decay_steps > 0 else optax.constant_schedule(peak_lr))
    return optax.join_schedules(
        [optax.linear_schedule(0.0, peak_lr, max(warmup_steps, 1)), decay], [warmup_steps])


__all__ = ["warmup_cosine", "warmup_linear_decay", "warmup_steps_for"]
