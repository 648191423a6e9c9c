"""What the K-FAC-expand and K-FAC-reduce baselines share: the KFAC optimizer in the
baselines' training step (``first_order.train_step``), with one extra line between forward
and backward: the curvature pass ``optimizer.update_curvature(logits, ...)``.

Hyperparameters (AlgoPerf's names where they exist):
    learning_rate, warmup_factor      warmup + cosine to 0 over step_hint * step_hint_factor
    one_minus_beta1                   K-FAC momentum = 1 - one_minus_beta1 (and NAdamW's beta1
                                      for the parameters K-FAC does not cover)
    beta2                             NAdamW's beta2 for those parameters (default 0.999)
    weight_decay                      decoupled, for every parameter
    damping                           lambda, on the curvature of the mean loss
    label_smoothing, dropout_rate, grad_clip (optional), step_hint_factor (optional)
  optional, with defaults:
    factor_every (1), inverse_every (10), factor_decay (0.95), kl_clip (0.001),
    fisher ("mc"), mc_samples (1: sampled labels per example for fisher "mc"),
    damping_mode ("pi")

Graph workloads that define ``kfac_segment_layouts(batch) -> (layouts, num_graphs)`` get
per-graph factors for their node/edge layers (``KFAC.set_segments``).
"""
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from algoperf import spec
from submissions import first_order
from submissions.optimizers.kfac import KFAC

LOSS_TYPES = {spec.LossType.SOFTMAX_CROSS_ENTROPY: "cross_entropy",
              spec.LossType.SIGMOID_CROSS_ENTROPY: "sigmoid_cross_entropy",
              spec.LossType.MEAN_SQUARED_ERROR: "mse"}

# Self-tuning defaults (hyperparameters=None): the point tuned by hand on cifar_wrn_tiny
# (K-FAC-reduce, 150 steps, seed 0: lr 0.02 / damping 0.01 reached validation 0.94 at step
# 81; lr 0.05 / damping 0.1 at step 98; NAdamW's target-setting runs at steps 114-154).
DEFAULTS = {"learning_rate": 0.02, "one_minus_beta1": 0.1, "beta2": 0.999,
            "weight_decay": 0.0005, "warmup_factor": 0.05, "damping": 0.01,
            "label_smoothing": 0.0, "dropout_rate": 0.0}


def make_optimizer(model: torch.nn.Module, hp: Any, flavour: str) -> KFAC:
    return KFAC(model, lr=hp.learning_rate, flavour=flavour, damping=hp.damping,
                damping_mode=getattr(hp, "damping_mode", "pi"),
                momentum=1.0 - hp.one_minus_beta1, weight_decay=hp.weight_decay,
                factor_decay=getattr(hp, "factor_decay", 0.95),
                factor_every=int(getattr(hp, "factor_every", 1)),
                inverse_every=int(getattr(hp, "inverse_every", 10)),
                kl_clip=getattr(hp, "kl_clip", 1e-3), fisher=getattr(hp, "fisher", "mc"),
                mc_samples=int(getattr(hp, "mc_samples", 1)),
                betas=(1.0 - hp.one_minus_beta1, getattr(hp, "beta2", 0.999)))


def curvature_weights(workload: spec.Workload, batch: Dict[str, Any]) -> Optional[torch.Tensor]:
    """Which outputs count in the curvature, and how much.

    Padding (weights 0) and missing labels do not count. K-FAC's factors are those of the
    loss averaged over *examples*; a multi-label loss (sigmoid cross-entropy) averages over
    the present labels instead, n_valid of them for N examples, so its curvature is N / n_valid
    times smaller: the weights carry sqrt(N / n_valid) (G is quadratic in them), so that
    damping and learning rate mean the same as for a per-example loss.
    """
    weights = batch.get("weights")
    if workload.loss_type == spec.LossType.SIGMOID_CROSS_ENTROPY:
        present = torch.isfinite(batch["targets"]).to(torch.float32)
        weights = present if weights is None else present * weights.reshape(
            weights.shape + (1,) * (present.dim() - weights.dim()))
        num_valid = weights.sum()
        num_examples = (weights.sum(dim=-1) > 0).sum()
        if num_valid > 0:
            weights = weights * torch.sqrt(num_examples / num_valid)
    return weights


def build(flavour: str, defaults: Dict[str, Any] = DEFAULTS):
    """AlgoPerf's ``init_optimizer_state`` and ``update_params`` for K-FAC-``flavour``."""
    default_hp = first_order.as_hyperparameters(defaults)

    def init_optimizer_state(workload: spec.Workload, model_params: spec.ParameterContainer,
                             model_state: spec.ModelAuxiliaryState,
                             hyperparameters: spec.Hyperparameters,
                             rng: spec.RandomState) -> spec.OptimizerState:
        del model_state, rng
        if workload.loss_type not in LOSS_TYPES:
            raise ValueError(f"K-FAC has no Fisher for {workload.loss_type} ({workload.name})")
        hp = first_order.resolve_hyperparameters(hyperparameters, default_hp)
        optimizer = make_optimizer(model_params, hp, flavour)
        return {"optimizer": optimizer,
                "scheduler": first_order.warmup_cosine_scheduler(optimizer, workload, hp)}

    def update_params(workload: spec.Workload, current_param_container: spec.ParameterContainer,
                      current_params_types: spec.ParameterTypeTree,
                      model_state: spec.ModelAuxiliaryState,
                      hyperparameters: spec.Hyperparameters, batch: Dict[str, spec.Tensor],
                      loss_type: spec.LossType, optimizer_state: spec.OptimizerState,
                      eval_results: List[Tuple[int, float]], global_step: int,
                      rng: spec.RandomState,
                      train_state: Optional[Dict[str, Any]] = None) -> spec.UpdateReturn:
        del current_params_types, eval_results, train_state
        hp = first_order.resolve_hyperparameters(hyperparameters, default_hp)
        new_model_state = train_step(workload, current_param_container, model_state, batch,
                                     loss_type, optimizer_state, hp, global_step, rng)
        return optimizer_state, current_param_container, new_model_state

    return init_optimizer_state, update_params


def train_step(workload: spec.Workload, model: torch.nn.Module,
               model_state: spec.ModelAuxiliaryState, batch: Dict[str, spec.Tensor],
               loss_type: spec.LossType, optimizer_state: Dict[str, Any], hp: Any,
               global_step: int, rng: spec.RandomState,
               after_curvature: Optional[Callable[[torch.Tensor], None]] = None
               ) -> spec.ModelAuxiliaryState:
    """``first_order.train_step`` with K-FAC's curvature pass between forward and backward;
    ``after_curvature(logits)`` runs right after it, still at the step's parameters (the
    marginal-likelihood submission reads the loss and the weights there)."""
    optimizer = optimizer_state["optimizer"]
    segment_layouts = getattr(workload, "kfac_segment_layouts", None)
    if segment_layouts is not None:
        optimizer.set_segments(*segment_layouts(batch))

    def curvature(logits: torch.Tensor) -> None:
        optimizer.update_curvature(logits, LOSS_TYPES[loss_type], batch["targets"],
                                   curvature_weights(workload, batch))
        if after_curvature is not None:
            after_curvature(logits)

    return first_order.train_step(workload, model, model_state, batch, optimizer_state, hp,
                                  global_step, rng, before_backward=curvature)
