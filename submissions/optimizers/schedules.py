"""Learning-rate schedules of AlgoPerf's baselines, as pure functions of the step.

Step t counts updates from 0: the update number t (0-based) uses lr(t), so the very first
update uses lr(0) = 0 under warmup (AlgoPerf's optax ``join_schedules`` and its PyTorch
``LinearLR(start_factor=1e-10)`` do the same).

    W = warmup_steps, T = total_steps (the schedule's length, e.g. a scaled ``step_hint``)

warmup_cosine_lr (NAdamW, AdamW):
    t <  W:  lr(t) = peak * t / W
    t >= W:  lr(t) = peak * 0.5 * (1 + cos(pi * min(t - W, C) / C)),   C = max(T - W, 1)
  so lr(W) = peak, lr(W + C/2) = peak / 2, and lr(t) = 0 for every t >= T. Past T the rate
  stays 0 (optax's cosine_decay_schedule clamps); torch's CosineAnnealingLR would instead
  climb back up, a cycle nobody asked for.

warmup_linear_decay_lr (SGD with Nesterov momentum, AlgoPerf's ``polynomial_schedule``):
    t <  W:  lr(t) = peak * t / W
    t >= W:  lr(t) = peak * (end + (1 - end) * (1 - min(t - W, D) / D)),   D = decay_steps
  reaching peak * end at t = W + D and holding it there; D <= 0 means no decay.

``lambda_lr`` turns either into a ``torch.optim.lr_scheduler.LambdaLR`` (multiplier = lr(t) /
peak, computed with peak = 1, so a zero peak never divides).
"""
import functools
import math
from typing import Callable


def warmup_steps_for(warmup_factor: float, total_steps: float) -> int:
    """AlgoPerf's warmup length: int(warmup_factor * total_steps)."""
    return int(warmup_factor * total_steps)


def warmup_cosine_lr(step: int, peak_lr: float, warmup_steps: int, total_steps: float) -> float:
    """Linear warmup from 0 to ``peak_lr`` over ``warmup_steps``, then cosine to 0 at
    ``total_steps`` (formula in the module docstring)."""
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min(step - warmup_steps, decay_steps) / decay_steps
    return peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_linear_decay_lr(step: int, peak_lr: float, warmup_steps: int, decay_steps: int,
                           end_factor: float) -> float:
    """Linear warmup to ``peak_lr``, then linear decay to ``peak_lr * end_factor`` over
    ``decay_steps``, constant after (formula in the module docstring)."""
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    if decay_steps <= 0:
        return peak_lr
    remaining = 1.0 - min(step - warmup_steps, decay_steps) / decay_steps
    return peak_lr * (end_factor + (1.0 - end_factor) * remaining)


def lambda_lr(optimizer, schedule: Callable[..., float], **schedule_kwargs):
    """A torch LambdaLR that sets each group's lr to ``group_initial_lr * schedule(t, 1.0,
    ...)`` (torch is imported here only: the schedules themselves are framework-free).

    Construction already applies t = 0; call ``.step()`` after each ``optimizer.step()``.
    """
    import torch
    multiplier = functools.partial(_multiplier, schedule=schedule, kwargs=schedule_kwargs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=multiplier)


def _multiplier(step: int, schedule: Callable[..., float], kwargs: dict) -> float:
    return schedule(step, 1.0, **kwargs)
