"""Blocked Shampoo with grafting: the update rule of Distributed Shampoo (Shi et al. 2023,
arXiv:2309.06497), the AlgoPerf v0.5 external-tuning winner, written for this project.

For a parameter W whose merged shape (``blocking.merge_dims``) has k >= 2 dims (or k = 1 with
``precondition_1d``), every block B (``blocking.block_slices``, each dim <= max_dim) of the
gradient G has one factor per dim. At step t = 1, 2, ... with b1, b2 = betas:

    F_i <- b2 F_i + (1 - b2) B_(i) B_(i)^T        B_(i): B unfolded along dim i
                                                  (b2 = 1: F_i <- F_i + B_(i) B_(i)^T, AdaGrad)
    m   <- b1 m + (1 - b1) G                      filtered gradient (skipped when b1 = 0)
    D    = m / (1 - b1^t)                          (use_nadam: D = (b1 m + (1 - b1) G) / (1 - b1^t))
    every f = precondition_frequency steps (t % f == 0):
        P_i = (F_i / (1 - b2^t) + eps I)^(-1/p)    p = 2k unless inv_root_override (``roots``)
    Shampoo direction of a block:   S = D_B x_1 P_1 x_2 ... x_k P_k
                                    (k = 2: S = P_1 D_B P_2, i.e. L^-1/4 D_B R^-1/4)
    grafting: S <- S * ||A_B|| / ||S||, A = the grafted optimizer's direction of D:
        adam: A = D / (sqrt(v / (1 - bg^t)) + eps_g),  v <- bg v + (1 - bg) G^2
        sgd:  A = D;      none: no rescaling
    before ``start_preconditioning_step`` (and for 1-D / huge / scalar parameters, the
    first-order fallback) the direction is A itself (D when grafting is none).
    U = direction + wd * W                         decoupled weight decay (lr multiplies it)
    momentum mu > 0:  buf <- mu buf + U;  U = U + mu buf (Nesterov) or U = buf
    W <- W - lr * U

With momentum 0, use_nadam and Adam grafting, every step before the start step is exactly
AlgoPerf's NAdamW (tested). Roots are computed at the steps t % f == 0 whose roots are used,
i.e. t + f > start; start must be >= f (-1 means start = f), so a root always exists when
preconditioning starts.

Distributed training: under DDP every process sees the same all-reduced gradient, so every
process accumulates the same factors and computes the same roots; the optimizer needs no
communication of its own (the roots are computed redundantly on each process; Distributed
Shampoo instead splits the root work across processes and all-gathers the directions).

State per parameter (state_dict / load_state_dict round-trip it): ``step``, ``exp_avg`` (b1 >
0), ``graft_exp_avg_sq`` (Adam grafting), ``momentum_buffer`` (mu > 0), ``factors`` and
``roots`` (lists over blocks of lists over dims of [d_i, d_i] tensors, float32 for float32
parameters). ``root_seconds`` accumulates the wall time of root computations (benchmarks).
"""
import logging
import math
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from submissions.optimizers.shampoo import blocking, roots

Tensor = torch.Tensor
GRAFTING_TYPES = ("adam", "sgd", "none")


class _Plan:
    """How one parameter is handled: merged shape, block index tuples, root per order."""

    def __init__(self, shape: Sequence[int], group: dict):
        self.merged = blocking.merge_dims(shape, group["max_preconditioner_dim"])
        order = len(self.merged)
        huge = any(d >= group["max_dim_for_shampoo"] for d in shape)
        self.preconditioned = (not huge and
                               (order >= 2 or (order == 1 and group["precondition_1d"])))
        if self.preconditioned:
            self.blocks = blocking.block_slices(self.merged, group["max_preconditioner_dim"])
            self.root = roots.root_for_order(order, group["inv_root_override"])
        else:
            self.blocks, self.root = [], 0


class Shampoo(torch.optim.Optimizer):
    """Blocked, grafted Shampoo (update rule in the module docstring).

    Args:
      params: parameters or parameter groups.
      lr: learning rate (a schedule sets ``param_groups[i]['lr']``).
      betas: (b1, b2): b1 filters the gradient (0 disables), b2 is the factors' EMA (1 =
        AdaGrad-style sum).
      epsilon: added to every factor eigenvalue before the inverse root (absolute, as in
        Distributed Shampoo; see ``roots``).
      momentum: mu, heavy-ball momentum on the final direction (0 disables).
      nesterov: Nesterov form of that momentum.
      weight_decay: decoupled decay wd (the step adds lr * wd * W).
      max_preconditioner_dim: largest factor size; larger dims are blocked.
      precondition_frequency: f, roots recomputed every f steps.
      start_preconditioning_step: first step using Shampoo directions (-1: = f); >= f.
      inv_root_override: p for every factor when > 0 (default 2k for a k-dim block).
      exponent_multiplier: roots are F^(-exponent_multiplier / p).
      use_nadam: Nesterov look-ahead on the filtered gradient (NAdam).
      use_bias_correction: divide m by 1 - b1^t and factors by 1 - b2^t.
      grafting: 'adam', 'sgd' or 'none'.
      grafting_beta2: Adam grafting's second-moment decay (default b2).
      grafting_epsilon: Adam grafting's epsilon (outside the square root).
      precondition_1d: precondition 1-D parameters with a full-matrix (blocked) factor; off,
        they take the first-order (grafted) fallback. "1-D" is the merged shape: a small
        matrix whose dims multiply to <= max_preconditioner_dim (a (10, 64) head at 1024)
        merges to a vector and is treated as one (Distributed Shampoo's merge rule).
      max_dim_for_shampoo: parameters with any dim >= this take the fallback (embedding
        tables; AlgoPerf's Shampoo used row-wise AdaGrad for dims >= 1,000,000).
    """

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999), epsilon: float = 1e-12,
                 momentum: float = 0.0, nesterov: bool = True, weight_decay: float = 0.0,
                 max_preconditioner_dim: int = 1024, precondition_frequency: int = 1,
                 start_preconditioning_step: int = -1, inv_root_override: int = 0,
                 exponent_multiplier: float = 1.0, use_nadam: bool = False,
                 use_bias_correction: bool = True, grafting: str = "adam",
                 grafting_beta2: Optional[float] = None, grafting_epsilon: float = 1e-8,
                 precondition_1d: bool = False, max_dim_for_shampoo: int = 1_000_000):
        if start_preconditioning_step == -1:
            start_preconditioning_step = precondition_frequency
        _check_args(lr=lr, betas=betas, epsilon=epsilon, momentum=momentum,
                    weight_decay=weight_decay, max_preconditioner_dim=max_preconditioner_dim,
                    precondition_frequency=precondition_frequency,
                    start_preconditioning_step=start_preconditioning_step,
                    inv_root_override=inv_root_override, grafting=grafting,
                    grafting_beta2=grafting_beta2, grafting_epsilon=grafting_epsilon)
        defaults = dict(lr=lr, betas=tuple(betas), epsilon=epsilon, momentum=momentum,
                        nesterov=nesterov, weight_decay=weight_decay,
                        max_preconditioner_dim=max_preconditioner_dim,
                        precondition_frequency=precondition_frequency,
                        start_preconditioning_step=start_preconditioning_step,
                        inv_root_override=inv_root_override,
                        exponent_multiplier=exponent_multiplier, use_nadam=use_nadam,
                        use_bias_correction=use_bias_correction, grafting=grafting,
                        grafting_beta2=betas[1] if grafting_beta2 is None else grafting_beta2,
                        grafting_epsilon=grafting_epsilon, precondition_1d=precondition_1d,
                        max_dim_for_shampoo=max_dim_for_shampoo)
        super().__init__(params, defaults)
        self._plans: Dict[int, _Plan] = {}
        self.root_seconds = 0.0

    def _plan(self, p: Tensor, group: dict) -> _Plan:
        # Derived from the shape and the group's settings only: never checkpointed.
        key = id(p)
        if key not in self._plans:
            self._plans[key] = _Plan(p.shape, group)
        return self._plans[key]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Shampoo does not support sparse gradients")
                self._step_param(p, group)
        return loss

    def _init_state(self, p: Tensor, plan: _Plan, group: dict) -> dict:
        state = self.state[p]
        state["step"] = torch.tensor(0.0)
        if group["betas"][0] > 0:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["grafting"] == "adam":
            state["graft_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["momentum"] > 0:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if plan.preconditioned:
            dtype = torch.float64 if p.dtype == torch.float64 else torch.float32
            sizes = [[s.stop - s.start for s in index] for index in plan.blocks]
            state["factors"] = [[torch.zeros(d, d, dtype=dtype, device=p.device) for d in ds]
                                for ds in sizes]
            state["roots"] = [[torch.eye(d, dtype=dtype, device=p.device) for d in ds]
                              for ds in sizes]
        return state

    def _step_param(self, p: Tensor, group: dict) -> None:
        plan = self._plan(p, group)
        state = self.state[p]
        if not state:
            state = self._init_state(p, plan, group)
        state["step"] += 1
        t = int(state["step"].item())
        beta1, beta2 = group["betas"]
        grad = p.grad

        if plan.preconditioned:
            _update_factors(state["factors"], grad.reshape(plan.merged), plan.blocks, beta2)
        if group["grafting"] == "adam":
            bg = group["grafting_beta2"]
            v = state["graft_exp_avg_sq"]
            if bg < 1.0:
                v.mul_(bg)
            v.addcmul_(grad, grad, value=1.0 - bg if bg < 1.0 else 1.0)

        filtered = _filtered_gradient(state, grad, t, group)
        graft = _grafted_direction(filtered, state, t, group)

        frequency, start = group["precondition_frequency"], group["start_preconditioning_step"]
        if plan.preconditioned and t % frequency == 0 and t + frequency > start:
            self._refresh_roots(state, plan, t, group)
        if plan.preconditioned and t >= start:
            direction = _shampoo_direction(filtered, graft, state["roots"], plan, group)
        else:
            direction = graft

        if group["weight_decay"] != 0:
            direction = direction.add(p, alpha=group["weight_decay"])
        mu = group["momentum"]
        if mu > 0:
            buf = state["momentum_buffer"]
            buf.mul_(mu).add_(direction)
            direction = direction.add(buf, alpha=mu) if group["nesterov"] else buf
        p.add_(direction, alpha=-group["lr"])

    def _refresh_roots(self, state: dict, plan: _Plan, t: int, group: dict) -> None:
        """P_i = (F_i / (1 - b2^t) + eps)^(-1/p) for every factor of every block."""
        start_time = time.perf_counter()
        beta2 = group["betas"][1]
        scale = 1.0
        if group["use_bias_correction"] and beta2 < 1.0:
            scale = 1.0 / (1.0 - beta2 ** t)
        for block_factors, block_roots in zip(state["factors"], state["roots"]):
            for i, factor in enumerate(block_factors):
                root = roots.matrix_inverse_root(factor * scale, plan.root, group["epsilon"],
                                                 group["exponent_multiplier"])
                if root is None:
                    logging.warning("Shampoo: eigendecomposition failed at step %d for a "
                                    "%d x %d factor; keeping the previous root", t,
                                    factor.shape[0], factor.shape[0])
                    continue
                block_roots[i] = root
        self.root_seconds += time.perf_counter() - start_time


def _check_args(*, lr, betas, epsilon, momentum, weight_decay, max_preconditioner_dim,
                precondition_frequency, start_preconditioning_step, inv_root_override,
                grafting, grafting_beta2, grafting_epsilon) -> None:
    """One ValueError naming the argument and the problem."""
    if lr < 0.0:
        raise ValueError(f"Shampoo: invalid lr {lr} (must be >= 0)")
    if not 0.0 <= betas[0] < 1.0 or not 0.0 < betas[1] <= 1.0:
        raise ValueError(f"Shampoo: invalid betas {betas} (b1 in [0, 1), b2 in (0, 1])")
    if epsilon < 0.0:
        raise ValueError(f"Shampoo: invalid epsilon {epsilon} (must be >= 0)")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"Shampoo: invalid momentum {momentum} (must be in [0, 1))")
    if weight_decay < 0.0:
        raise ValueError(f"Shampoo: invalid weight_decay {weight_decay} (must be >= 0)")
    if int(max_preconditioner_dim) != max_preconditioner_dim or max_preconditioner_dim < 1:
        raise ValueError(f"Shampoo: invalid max_preconditioner_dim {max_preconditioner_dim} "
                         "(must be an integer >= 1)")
    if int(precondition_frequency) != precondition_frequency or precondition_frequency < 1:
        raise ValueError(f"Shampoo: invalid precondition_frequency {precondition_frequency} "
                         "(must be an integer >= 1)")
    if start_preconditioning_step < precondition_frequency:
        raise ValueError(
            f"Shampoo: invalid start_preconditioning_step {start_preconditioning_step} "
            f"(must be -1 or >= precondition_frequency={precondition_frequency}, so that "
            "roots exist when preconditioning starts)")
    if int(inv_root_override) != inv_root_override or inv_root_override < 0:
        raise ValueError(f"Shampoo: invalid inv_root_override {inv_root_override} "
                         "(0 for the default 2k, or an integer root >= 1)")
    if grafting not in GRAFTING_TYPES:
        raise ValueError(f"Shampoo: invalid grafting {grafting!r} (one of {GRAFTING_TYPES})")
    if grafting_beta2 is not None and not 0.0 < grafting_beta2 <= 1.0:
        raise ValueError(f"Shampoo: invalid grafting_beta2 {grafting_beta2} (in (0, 1])")
    if grafting_epsilon < 0.0:
        raise ValueError(f"Shampoo: invalid grafting_epsilon {grafting_epsilon} (>= 0)")


def _update_factors(factors: List[List[Tensor]], grad: Tensor,
                    blocks: Sequence[blocking.BlockIndex], beta2: float) -> None:
    """F_i <- b2 F_i + (1 - b2) B_(i) B_(i)^T for every block B of ``grad`` (merged shape);
    plain sum when b2 = 1."""
    for block_factors, index in zip(factors, blocks):
        block = grad[index].to(block_factors[0].dtype)
        order = block.dim()
        for i, factor in enumerate(block_factors):
            others = [j for j in range(order) if j != i]
            outer = torch.tensordot(block, block, dims=(others, others))  # [d_i, d_i]
            if beta2 < 1.0:
                factor.mul_(beta2).add_(outer, alpha=1.0 - beta2)
            else:
                factor.add_(outer)


def _filtered_gradient(state: dict, grad: Tensor, t: int, group: dict) -> Tensor:
    """D: the bias-corrected EMA of the gradient (NAdam look-ahead when use_nadam)."""
    beta1 = group["betas"][0]
    if beta1 == 0:
        return grad
    m = state["exp_avg"]
    m.lerp_(grad, 1.0 - beta1)
    # A fresh tensor for the look-ahead so the state m is never modified.
    d = torch.lerp(m, grad, 1.0 - beta1) if group["use_nadam"] else m.clone()
    if group["use_bias_correction"]:
        d.div_(1.0 - beta1 ** t)
    return d


def _grafted_direction(filtered: Tensor, state: dict, t: int, group: dict) -> Tensor:
    """A: the grafted optimizer's direction of D (D itself for 'sgd' and 'none')."""
    if group["grafting"] != "adam":
        return filtered
    bg = group["grafting_beta2"]
    v = state["graft_exp_avg_sq"]
    denom = v.sqrt()
    if group["use_bias_correction"] and bg < 1.0:
        denom.div_(math.sqrt(1.0 - bg ** t))
    return filtered / denom.add_(group["grafting_epsilon"])


def _precondition_block(block: Tensor, block_roots: Sequence[Tensor]) -> Tensor:
    """block x_1 P_1 ... x_k P_k: contracting dim 0 with P_i and appending the result as
    the last dim, k times, returns the dims to their order (P_i symmetric)."""
    out = block.to(block_roots[0].dtype)
    for root in block_roots:
        out = torch.tensordot(out, root, dims=([0], [0]))
    return out


def _shampoo_direction(filtered: Tensor, graft: Tensor, block_roots: List[List[Tensor]],
                       plan: _Plan, group: dict) -> Tensor:
    """Every block preconditioned by its roots, rescaled to the grafted block's norm."""
    merged_filtered = filtered.reshape(plan.merged)
    merged_graft = graft.reshape(plan.merged)
    out = torch.empty_like(merged_filtered)
    for index, rts in zip(plan.blocks, block_roots):
        s = _precondition_block(merged_filtered[index], rts)
        if group["grafting"] != "none":
            s_norm = torch.linalg.vector_norm(s)
            g_norm = torch.linalg.vector_norm(merged_graft[index]).to(s.dtype)
            # A zero Shampoo block (zero gradient) stays zero instead of 0/0.
            s = s * torch.where(s_norm > 0, g_norm / s_norm.clamp(min=1e-30),
                                torch.zeros_like(s_norm))
        out[index] = s.to(out.dtype)
    return out.reshape(filtered.shape)
