"""NAdamW: AlgoPerf's baseline optimizer (Adam + Nesterov look-ahead + decoupled weight decay).

This is the rule of AlgoPerf's NAdamW baselines (Dozat's NAdam in the simplified form of
Table 1 of arXiv:1910.05446: no momentum-decay schedule, standard Adam bias corrections).
It is *not* ``torch.optim.NAdam``, which follows Dozat's original paper with a momentum-decay
schedule ``mu_t = b1 * (1 - 0.5 * 0.96^(t * psi))`` and different bias corrections.

For every parameter p with gradient g, at step t = 1, 2, ... (t counts this step):

    m_t   = b1 * m_{t-1} + (1 - b1) * g                  first moment (the state)
    v_t   = b2 * v_{t-1} + (1 - b2) * g^2                second moment (the state)
    n_t   = b1 * m_t     + (1 - b1) * g                  Nesterov look-ahead of m
    n_hat = n_t / (1 - b1^t)                             bias corrections
    v_hat = v_t / (1 - b2^t)
    p    <- p - lr * wd * p - lr * n_hat / (sqrt(v_hat) + eps)

``lr`` multiplies the weight decay too (PyTorch's and optax's convention, unlike Loshchilov
and Hutter, who scale wd by the schedule only), so a schedule that takes lr to 0 also stops
the decay. Only m_t, not the look-ahead n_t, is carried to the next step.

At t = 1 from zero state the step is closed-form:
    p1 = p0 * (1 - lr * wd) - lr * (1 + b1) * g / (|g| + eps),
i.e. a sign step of size lr * (1 + b1), where Adam would take lr.

State per parameter uses torch.optim.AdamW's names (``step``, ``exp_avg``, ``exp_avg_sq``),
which AlgoPerf's PyTorch NAdamW also uses, so its checkpoints load here and back.
"""
import math
from typing import Iterable, List, Tuple

import torch


class NAdamW(torch.optim.Optimizer):
    """AlgoPerf's NAdamW (formulas in the module docstring).

    Args:
      params: parameters or parameter groups.
      lr: learning rate; a schedule sets ``param_groups[i]['lr']`` before each step.
      betas: (b1, b2), decay rates of the first and second moments.
      eps: added to sqrt(v_hat) (outside the root), as in Adam.
      weight_decay: decoupled decay coefficient wd (the step shrinks p by lr * wd * p).
    """

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon: {eps}")
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid betas: {betas} (each must be in [0, 1))")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay: {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            nadamw_step(group["params"], self.state, group)
        return loss


def nadamw_update(params: List[torch.Tensor], grads: List[torch.Tensor],
                  exp_avgs: List[torch.Tensor], exp_avg_sqs: List[torch.Tensor],
                  steps: List[int], *, lr: float, beta1: float, beta2: float, eps: float,
                  weight_decay: float) -> None:
    """One NAdamW step, in place, on lists of tensors (steps[i] = t of params[i], >= 1).

    Uses the multi-tensor ``torch._foreach_*`` kernels (as torch.optim does) so a model with
    hundreds of tensors costs a handful of kernel launches, not hundreds.
    """
    # p <- p * (1 - lr * wd): decoupled decay, from the old p (same as subtracting lr*wd*p).
    if weight_decay != 0.0:
        torch._foreach_mul_(params, 1.0 - lr * weight_decay)
    # m <- b1 m + (1 - b1) g  ==  lerp(m, g, 1 - b1).
    torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
    # v <- b2 v + (1 - b2) g^2.
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1.0 - beta2)
    # n = b1 m + (1 - b1) g: a fresh buffer, so the state m is never modified and undone.
    lookahead = torch._foreach_lerp(exp_avgs, grads, 1.0 - beta1)
    # denom = sqrt(v) / sqrt(1 - b2^t) + eps  ==  sqrt(v_hat) + eps.
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, [math.sqrt(1.0 - beta2 ** t) for t in steps])
    torch._foreach_add_(denom, eps)
    # p <- p - lr / (1 - b1^t) * n / denom.
    torch._foreach_addcdiv_(params, lookahead, denom,
                            [-lr / (1.0 - beta1 ** t) for t in steps])


def nadamw_step(parameters, state: dict, group: dict) -> None:
    """One NAdamW step for ``parameters`` with gradients, their per-parameter ``state``
    (created on first use) and the hyperparameters of ``group`` (lr, betas, eps,
    weight_decay). Shared by ``NAdamW`` and other optimizers' first-order fallbacks."""
    params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
    for p in parameters:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError("NAdamW does not support sparse gradients")
        p_state = state[p]
        if not p_state:
            # 'step' is a CPU float tensor, as in torch.optim, so reading it never
            # synchronises a GPU and state_dict() round-trips like AdamW's.
            p_state["step"] = torch.tensor(0.0)
            p_state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            p_state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        p_state["step"] += 1
        params.append(p)
        grads.append(p.grad)
        exp_avgs.append(p_state["exp_avg"])
        exp_avg_sqs.append(p_state["exp_avg_sq"])
        steps.append(int(p_state["step"].item()))
    if params:
        beta1, beta2 = group["betas"]
        nadamw_update(params, grads, exp_avgs, exp_avg_sqs, steps, lr=group["lr"], beta1=beta1,
                      beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"])

