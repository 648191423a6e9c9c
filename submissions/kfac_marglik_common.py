"""K-FAC that learns its own weight decay: per-layer prior precisions chosen online by
maximising the Laplace log marginal likelihood (Immer et al., ICML 2021), with the K-FAC GGN
of either flavour (Eschenhagen et al., NeurIPS 2023: K-FAC-reduce's factors are cheaper).

A self-tuning submission (``hyperparameters=None``, no search space): the training step is
``kfac_baseline``'s at its self-tuning point (``kfac_baseline.DEFAULTS``), and only the weight
decay of the K-FAC-covered layers (Linear, Conv2d; B of them) is learned.

Prior. Layer b's parameters theta_b = [W_b, b_b] (bias folded, as the optimizer's factors)
get N(0, delta_b^{-1} I). The parameters K-FAC does not cover (norm scales and shifts,
embeddings) are point estimates outside the Laplace model and keep the default decay.

Marginal-likelihood step (``marglik_step``), every ``marglik_every_epochs`` (F) epochs after
``marglik_burnin_epochs`` epochs:
  1. the Kronecker factors A_b, G_b are the optimizer's (an EMA over recent batches of the
     flavour's factors at the current parameters; this step's curvature pass has just
     updated them), so the factor cost is the flavour's and is paid in the training step;
  2. their eigenvalues (``marglik.block_eigenvalues``, eigvalsh of each factor);
  3. ``marglik_steps`` Adam steps (lr ``marglik_lr``) of ascent on log ML in eta = log delta
     (``marglik.maximise_log_prior_precision``; formulas in ``optimizers/kfac/marglik.py``),
     with N = ``workload.num_train_examples`` (the GGN of the summed loss is N (G (x) A)),
     ||theta_b||^2 and the data term -N L read at the step's parameters, L = this batch's
     mean per-example loss (the data term only enters the logged value, not the gradient);
     projected onto wd in [``marglik_min_weight_decay``, ``marglik_max_weight_decay``]
     (delta_b = gamma_b / ||theta_b||^2 is unbounded for a layer near zero); a layer at
     exactly zero (a zero-initialised head before its first update) is skipped.

Prior precision -> weight decay. The MAP objective per example is
L(theta) + 1/(2N) sum_b delta_b ||theta_b||^2, whose prior gradient is (delta_b / N) theta_b.
The optimizer's decay is decoupled, p <- p (1 - lr wd) (not preconditioned, as in AdamW), so
wd_b = delta_b / N makes one step of the decay equal one step of that gradient at the
learning rate. The initial delta_b = N * wd_0 (wd_0 = the K-FAC baselines' default decay), so
training starts as ``kfac_<flavour>`` does with hyperparameters=None.

Logged (``workload.metrics_logger``, measurements.csv) at every marginal-likelihood step:
``marglik/log_ml`` (formula (1) after the update), ``marglik/log_ml_per_example`` (/ N),
``marglik/mean_weight_decay`` and ``marglik/prior_precision/<layer>``. The learned state
(``optimizer_state['marglik']``: eta and the history) is in the checkpoint; the layers' decays
are set from it on every step, so a resumed run continues with the learned decays.
"""
import math
from typing import Any, Dict, List, Optional, Tuple

import torch
from absl import logging

from algoperf import spec
from submissions import first_order, kfac_baseline
from submissions.optimizers.kfac import marglik

DEFAULTS = dict(kfac_baseline.DEFAULTS,
                marglik_burnin_epochs=1.0, marglik_every_epochs=0.5,
                marglik_steps=100, marglik_lr=0.1,
                # The learned decays stay in [min, max]: at the peak lr (0.02) a decay of 1
                # shrinks a layer by 2% a step, and lr * wd < 1 keeps p (1 - lr wd) a decay.
                marglik_min_weight_decay=1e-6, marglik_max_weight_decay=1.0)


def _marglik_hp(hp: Any) -> Any:
    """hp with the marginal-likelihood settings filled in from DEFAULTS where a point (an
    external-tuning trial of the K-FAC baselines' space) has none."""
    missing = {k: v for k, v in DEFAULTS.items() if k.startswith("marglik_")
               and not hasattr(hp, k)}
    if not missing:
        return hp
    return first_order.as_hyperparameters(dict(hp._asdict(), **missing))


def steps_per_epoch(workload: spec.Workload) -> float:
    """N / batch size, the batch size the runner asks for (the base workload's for a
    variant, as AlgoPerf retries)."""
    try:
        batch_size = first_order.get_batch_size(workload.name)
    except ValueError:
        batch_size = first_order.get_batch_size(workload.base_workload_name)
    return workload.num_train_examples / batch_size


def is_marglik_step(global_step: int, workload: spec.Workload, hp: Any) -> bool:
    """After the burn-in, every F epochs (at least every step), counting from the burn-in."""
    per_epoch = steps_per_epoch(workload)
    burnin = int(round(hp.marglik_burnin_epochs * per_epoch))
    every = max(1, int(round(hp.marglik_every_epochs * per_epoch)))
    return global_step >= burnin and (global_step - burnin) % every == 0


def weight_decays(log_prior_precision: torch.Tensor, num_train_examples: int) -> List[float]:
    """wd_b = delta_b / N (module docstring)."""
    return (log_prior_precision.exp() / num_train_examples).tolist()


def _num_examples(batch: Dict[str, Any], logits: torch.Tensor) -> int:
    """Examples in the batch that count (a padded example has weight 0 everywhere)."""
    weights = batch.get("weights")
    if weights is None:
        return logits.shape[0]
    return int((weights.reshape(weights.shape[0], -1) > 0).any(dim=1).sum())


def precision_bounds(num_train_examples: int, hp: Any) -> Tuple[float, float]:
    """Bounds on eta = log delta from the decay bounds (wd = delta / N)."""
    return (math.log(num_train_examples * hp.marglik_min_weight_decay),
            math.log(num_train_examples * hp.marglik_max_weight_decay))


def marglik_step(optimizer, names: List[str], state: Dict[str, Any], observed: Dict[str, Any],
                 num_train_examples: int, hp: Any, global_step: int) -> Dict[str, Any]:
    """Steps 2-3 of the module docstring on the layers that have factors; returns the
    history entry (and updates ``state['log_prior_precision']`` in place), None when no
    layer has factors yet."""
    eta = state["log_prior_precision"]
    # A layer without factors yet, or still at zero (a zero-initialised head before its
    # first update: no information on its scale), keeps its precision.
    have = [i for i, m in enumerate(optimizer.covered_modules)
            if optimizer.factors(m) is not None and observed["sq_norms"][i] > 0]
    if not have:
        return None
    eigvals = []
    for i in have:
        A, G = optimizer.factors(optimizer.covered_modules[i])
        eigvals.append(marglik.block_eigenvalues((G.double(), A.double())))
    sq_norms = observed["sq_norms"][have]
    new_eta = marglik.maximise_log_prior_precision(eta[have], sq_norms, eigvals,
                                                   num_train_examples,
                                                   steps=int(hp.marglik_steps),
                                                   lr=hp.marglik_lr,
                                                   bounds=precision_bounds(num_train_examples,
                                                                           hp))
    eta[have] = new_eta
    log_ml = marglik.log_marginal_likelihood(observed["log_likelihood"], sq_norms, eigvals,
                                             num_train_examples, new_eta.exp()).item()
    entry = {"step": global_step, "log_ml": log_ml,
             "log_ml_per_example": log_ml / num_train_examples,
             "prior_precision": dict(zip(names, eta.exp().tolist()))}
    state["history"].append(entry)
    return entry


def build(flavour: str, defaults: Dict[str, Any] = DEFAULTS):
    """AlgoPerf's ``init_optimizer_state`` and ``update_params`` for marglik K-FAC-``flavour``."""
    default_hp = first_order.as_hyperparameters(defaults)
    init_kfac, _ = kfac_baseline.build(flavour, defaults)

    def init_optimizer_state(workload: spec.Workload, model_params: spec.ParameterContainer,
                             model_state: spec.ModelAuxiliaryState,
                             hyperparameters: spec.Hyperparameters,
                             rng: spec.RandomState) -> spec.OptimizerState:
        hp = _marglik_hp(first_order.resolve_hyperparameters(hyperparameters, default_hp))
        state = init_kfac(workload, model_params, model_state, hyperparameters, rng)
        optimizer = state["optimizer"]
        num_layers = len(optimizer.covered_modules)
        delta0 = workload.num_train_examples * hp.weight_decay
        state["marglik"] = {
            "log_prior_precision": torch.full((num_layers,), math.log(delta0),
                                              dtype=torch.float64),
            "history": []}
        return state

    def update_params(workload: spec.Workload, current_param_container: spec.ParameterContainer,
                      current_params_types: spec.ParameterTypeTree,
                      model_state: spec.ModelAuxiliaryState,
                      hyperparameters: spec.Hyperparameters, batch: Dict[str, spec.Tensor],
                      loss_type: spec.LossType, optimizer_state: spec.OptimizerState,
                      eval_results: List[Tuple[int, float]], global_step: int,
                      rng: spec.RandomState,
                      train_state: Optional[Dict[str, Any]] = None) -> spec.UpdateReturn:
        del current_params_types, eval_results, train_state
        hp = _marglik_hp(first_order.resolve_hyperparameters(hyperparameters, default_hp))
        optimizer, state = optimizer_state["optimizer"], optimizer_state["marglik"]
        n = workload.num_train_examples
        optimizer.set_layer_weight_decays(weight_decays(state["log_prior_precision"], n))
        do_marglik = is_marglik_step(global_step, workload, hp)
        observed: Dict[str, Any] = {}

        def observe(logits: torch.Tensor) -> None:
            # At the step's parameters, before the update: theta* and L(theta*) of formula (1).
            if not do_marglik:
                return
            with torch.no_grad():
                observed["sq_norms"] = torch.stack([
                    sum(p.detach().double().pow(2).sum() for p in m.parameters())
                    for m in optimizer.covered_modules])
                loss = workload.loss_fn(batch["targets"], logits, batch.get("weights"))
                per_example = loss["summed"].double() / max(_num_examples(batch, logits), 1)
                observed["log_likelihood"] = -n * per_example

        new_model_state = kfac_baseline.train_step(
            workload, current_param_container, model_state, batch, loss_type, optimizer_state,
            hp, global_step, rng, after_curvature=observe)
        if do_marglik:
            names = _layer_names(current_param_container, optimizer.covered_modules)
            entry = marglik_step(optimizer, names, state, observed, n, hp, global_step)
            if entry is not None:
                decays = weight_decays(state["log_prior_precision"], n)
                optimizer.set_layer_weight_decays(decays)
                _log(workload, entry, decays, global_step)
        return optimizer_state, current_param_container, new_model_state

    return init_optimizer_state, update_params


def _layer_names(model: torch.nn.Module, modules) -> List[str]:
    by_id = {id(m): name for name, m in model.named_modules()}
    return [by_id.get(id(m), str(i)) for i, m in enumerate(modules)]


def _log(workload: spec.Workload, entry: Dict[str, Any], decays: List[float],
         global_step: int) -> None:
    scalars = {"marglik/log_ml": entry["log_ml"],
               "marglik/log_ml_per_example": entry["log_ml_per_example"],
               "marglik/mean_weight_decay": sum(decays) / len(decays)}
    scalars.update({f"marglik/prior_precision/{name}": value
                    for name, value in entry["prior_precision"].items()})
    metrics_logger = getattr(workload, "metrics_logger", None)
    if metrics_logger is not None:
        metrics_logger.append_scalar_metrics(scalars, global_step)
    logging.info("%d) marglik: log ML / N = %.4f, mean weight decay %.3g", global_step,
                 entry["log_ml_per_example"], scalars["marglik/mean_weight_decay"])
