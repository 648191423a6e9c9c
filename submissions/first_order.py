"""What the first-order baselines (AdamW, NAdamW, SGD + Nesterov) share: one training step.

A baseline's ``submission.py`` only says which optimizer and which schedule it uses, and its
self-tuning defaults; ``build`` turns that into AlgoPerf's ``init_optimizer_state`` and
``update_params``. The step is AlgoPerf's PyTorch baseline step:

    loss = sum_i w_i * l_i / sum_i w_i        over the *global* batch (all DDP ranks)
    clip ||grad||_2 to ``grad_clip`` (if the point has one); optimizer.step(); scheduler.step()

``optimizer_state`` is ``{'optimizer': torch.optim.Optimizer, 'scheduler': LambdaLR}``, the
layout of AlgoPerf's PyTorch baselines, so checkpointing through ``state_dict()`` works.

Hyperparameter names are AlgoPerf's: ``learning_rate``, ``one_minus_beta1``, ``beta2``,
``weight_decay``, ``warmup_factor``, ``label_smoothing``, ``dropout_rate``, ``grad_clip``
(optional), and for SGD's schedule ``decay_steps_factor``, ``end_factor``. One more, optional:
``step_hint_factor`` (default 1.0) scales ``workload.step_hint`` into the schedule's length;
AlgoPerf's target-setting baselines use 0.75, its full-budget ones 1.0.
"""
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import torch
import torch.distributed.nn as dist_nn
from absl import logging

from algoperf import spec
from algoperf.pytorch_utils import pytorch_setup
from submissions.baseline_settings import (  # noqa: F401 (the baselines' shared settings)
    ALGOPERF_NADAMW_SELF_TUNING, BATCH_SIZES, SGD_NESTEROV_SELF_TUNING, as_hyperparameters,
    get_batch_size, resolve_hyperparameters, schedule_length, should_log)
from submissions.optimizers import schedules

# Read once at import, as AlgoPerf's baselines do: torchrun sets LOCAL_RANK before this runs.
USE_PYTORCH_DDP = pytorch_setup()[0]

MakeOptimizer = Callable[[Any, Any], torch.optim.Optimizer]  # (parameters, hp) -> optimizer
MakeScheduler = Callable[[torch.optim.Optimizer, spec.Workload, Any],
                         torch.optim.lr_scheduler.LRScheduler]










def warmup_cosine_scheduler(optimizer: torch.optim.Optimizer, workload: spec.Workload,
                            hp: Any) -> torch.optim.lr_scheduler.LambdaLR:
    """AdamW's and NAdamW's schedule: warmup over int(warmup_factor * T), cosine to 0 at T."""
    total = schedule_length(workload, hp)
    return schedules.lambda_lr(optimizer, schedules.warmup_cosine_lr,
                               warmup_steps=schedules.warmup_steps_for(hp.warmup_factor, total),
                               total_steps=total)


def warmup_linear_decay_scheduler(optimizer: torch.optim.Optimizer, workload: spec.Workload,
                                  hp: Any) -> torch.optim.lr_scheduler.LambdaLR:
    """SGD's schedule: warmup, then linear decay to end_factor * lr over
    int((T - warmup) * decay_steps_factor) steps (AlgoPerf's Nesterov baseline)."""
    total = schedule_length(workload, hp)
    warmup = schedules.warmup_steps_for(hp.warmup_factor, total)
    return schedules.lambda_lr(optimizer, schedules.warmup_linear_decay_lr,
                               warmup_steps=warmup,
                               decay_steps=int((total - warmup) * hp.decay_steps_factor),
                               end_factor=hp.end_factor)


def global_mean_loss(loss_dict: Dict[str, Any]) -> torch.Tensor:
    """summed / n_valid over all ranks. ``torch.distributed.nn.all_reduce`` is differentiable,
    so after DDP averages the gradients over ranks they are those of this global mean."""
    summed = loss_dict["summed"]
    n_valid = torch.as_tensor(loss_dict["n_valid_examples"], device=summed.device)
    if USE_PYTORCH_DDP:
        summed = dist_nn.all_reduce(summed)
        n_valid = dist_nn.all_reduce(n_valid)
    return summed / n_valid




def _grad_norm(model: torch.nn.Module) -> torch.Tensor:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def train_step(workload: spec.Workload, model: torch.nn.Module,
               model_state: spec.ModelAuxiliaryState, batch: Dict[str, spec.Tensor],
               optimizer_state: Dict[str, Any], hp: Any, global_step: int,
               rng: spec.RandomState,
               before_backward: Optional[Callable[[torch.Tensor], None]] = None
               ) -> spec.ModelAuxiliaryState:
    """Forward, global-mean loss, backward, optional clipping, optimizer and schedule step.

    ``before_backward(logits)`` runs between forward and backward (K-FAC's curvature pass).
    Returns the new model state (e.g. batch-norm statistics); params change in place.
    """
    # model_fn puts the model in train mode (only when it is not already: a mode switch walks
    # the whole module tree).
    optimizer_state["optimizer"].zero_grad(set_to_none=True)
    # dropout_rate goes to model_fn only when the point has one: otherwise the workload's
    # default applies, as in AlgoPerf.
    extra = {"dropout_rate": hp.dropout_rate} if hasattr(hp, "dropout_rate") else {}
    logits, new_model_state = workload.model_fn(
        params=model, augmented_and_preprocessed_input_batch=batch, model_state=model_state,
        mode=spec.ForwardPassMode.TRAIN, rng=rng, update_batch_norm=True, **extra)
    loss_dict = workload.loss_fn(
        label_batch=batch["targets"], logits_batch=logits, mask_batch=batch.get("weights"),
        label_smoothing=getattr(hp, "label_smoothing", 0.0))
    loss = global_mean_loss(loss_dict)
    if before_backward is not None:
        before_backward(logits)
    loss.backward()

    grad_clip = getattr(hp, "grad_clip", None)
    grad_norm = None
    if grad_clip is not None:
        # Returns the norm before clipping, which is also what we log.
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=grad_clip)
    optimizer_state["optimizer"].step()
    optimizer_state["scheduler"].step()

    metrics_logger = getattr(workload, "metrics_logger", None)
    if should_log(global_step):
        with torch.no_grad():
            grad_norm = _grad_norm(model) if grad_norm is None else grad_norm
        scalars = {"loss": loss.item(), "grad_norm": grad_norm.item()}
        if metrics_logger is not None:
            metrics_logger.append_scalar_metrics(scalars, global_step)
        logging.info("%d) loss = %0.3f, grad_norm = %0.3f", global_step, scalars["loss"],
                     scalars["grad_norm"])
    return new_model_state


def build(make_optimizer: MakeOptimizer, make_scheduler: MakeScheduler,
          defaults: Mapping[str, Any]):
    """AlgoPerf's ``init_optimizer_state`` and ``update_params`` for one baseline.

    ``make_optimizer(parameters, hp)`` builds the torch optimizer; ``make_scheduler(optimizer,
    workload, hp)`` its schedule; ``defaults`` are the self-tuning hyperparameters.
    """
    # Built once: update_params runs every step and must not make a class each time.
    default_hp = as_hyperparameters(defaults)

    def init_optimizer_state(workload: spec.Workload, model_params: spec.ParameterContainer,
                             model_state: spec.ModelAuxiliaryState,
                             hyperparameters: spec.Hyperparameters,
                             rng: spec.RandomState) -> spec.OptimizerState:
        del model_state, rng
        hp = resolve_hyperparameters(hyperparameters, default_hp)
        optimizer = make_optimizer(model_params.parameters(), hp)
        return {"optimizer": optimizer, "scheduler": make_scheduler(optimizer, workload, hp)}

    def update_params(workload: spec.Workload,
                      current_param_container: spec.ParameterContainer,
                      current_params_types: spec.ParameterTypeTree,
                      model_state: spec.ModelAuxiliaryState,
                      hyperparameters: spec.Hyperparameters,
                      batch: Dict[str, spec.Tensor], loss_type: spec.LossType,
                      optimizer_state: spec.OptimizerState,
                      eval_results: List[Tuple[int, float]], global_step: int,
                      rng: spec.RandomState,
                      train_state: Optional[Dict[str, Any]] = None) -> spec.UpdateReturn:
        del current_params_types, loss_type, eval_results, train_state
        hp = resolve_hyperparameters(hyperparameters, default_hp)
        new_model_state = train_step(workload, current_param_container, model_state, batch,
                                     optimizer_state, hp, global_step, rng)
        return optimizer_state, current_param_container, new_model_state

    return init_optimizer_state, update_params


def data_selection(workload: spec.Workload, input_queue: Iterator[Dict[str, spec.Tensor]],
                   optimizer_state: spec.OptimizerState,
                   current_param_container: spec.ParameterContainer,
                   model_state: spec.ModelAuxiliaryState,
                   hyperparameters: spec.Hyperparameters, global_step: int,
                   rng: spec.RandomState) -> Dict[str, spec.Tensor]:
    """The next batch of the harness's shuffled, repeating input queue."""
    del workload, optimizer_state, current_param_container, model_state
    del hyperparameters, global_step, rng
    return next(input_queue)


def prepare_for_eval(workload: spec.Workload, current_param_container: spec.ParameterContainer,
                     current_params_types: spec.ParameterTypeTree,
                     model_state: spec.ModelAuxiliaryState,
                     hyperparameters: spec.Hyperparameters, loss_type: spec.LossType,
                     optimizer_state: spec.OptimizerState,
                     eval_results: List[Tuple[int, float]], global_step: int,
                     rng: spec.RandomState) -> spec.UpdateReturn:
    """Nothing to do: first-order baselines evaluate their current parameters."""
    del workload, current_params_types, hyperparameters, loss_type, eval_results
    del global_step, rng
    return optimizer_state, current_param_container, model_state
