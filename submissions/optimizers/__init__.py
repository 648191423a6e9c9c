"""Optimizers and learning-rate schedules of the baselines, importable outside the harness.

AdamW and SGD with Nesterov momentum are ``torch.optim.AdamW`` / ``torch.optim.SGD(nesterov=
True)``: nothing here re-implements them. NAdamW (AlgoPerf's rule) is in ``nadamw``.
"""
from submissions.optimizers.nadamw import NAdamW, nadamw_update
from submissions.optimizers.schedules import (lambda_lr, warmup_cosine_lr,
                                              warmup_linear_decay_lr, warmup_steps_for)

__all__ = ["NAdamW", "nadamw_update", "lambda_lr", "warmup_cosine_lr",
           "warmup_linear_decay_lr", "warmup_steps_for"]
