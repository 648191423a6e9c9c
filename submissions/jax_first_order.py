"""What the JAX first-order baselines share: one jitted training step over the device mesh.

The step is the PyTorch baselines' (``submissions.first_order``), in JAX::

    loss = sum_i w_i l_i / sum_i w_i      over the global batch (sharded over the mesh: jit
                                          partitions the sums, no pmap, no pmean)
    grads = d loss / d params;  updates, opt_state = tx.update(grads, opt_state, params)

``optimizer_state`` is AlgoPerf's JAX layout, ``(optax state, tx.update)``. Parameters, model
state and optimizer state stay replicated on every device (``jax_sharding_utils``); the
checkpoint keeps the optax state's arrays and takes ``tx.update`` from a fresh
``init_optimizer_state``. ``tx`` is built from the hyperparameters by the baseline
(``make_transform(hp, workload)``); gradient clipping (``grad_clip``) is prepended here.
"""
import functools
from typing import Any, Callable, Dict, Mapping, Optional

import jax
import jax.numpy as jnp
import optax
from absl import logging

from algoperf import jax_sharding_utils, spec
from submissions.baseline_settings import (  # noqa: F401 (the baselines' shared settings)
    as_hyperparameters, get_batch_size, resolve_hyperparameters, schedule_length, should_log)

MakeTransform = Callable[[Any, spec.Workload], optax.GradientTransformation]


@functools.partial(jax.jit, static_argnames=("workload", "update_fn", "dropout_rate",
                                             "label_smoothing", "has_dropout"))
def _train_step(workload, update_fn, params, model_state, opt_state, batch, rng,
                dropout_rate, label_smoothing, has_dropout):
    def loss_of(params):
        extra = {"dropout_rate": dropout_rate} if has_dropout else {}
        logits, new_model_state = workload.model_fn(
            params, batch, model_state, spec.ForwardPassMode.TRAIN, rng, update_batch_norm=True,
            **extra)
        loss = workload.loss_fn(batch["targets"], logits, batch.get("weights"),
                                label_smoothing=label_smoothing)
        return loss["summed"] / loss["n_valid_examples"], new_model_state

    (loss, new_model_state), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    updates, opt_state = update_fn(grads, opt_state, params)
    return (optax.apply_updates(params, updates), new_model_state, opt_state, loss,
            optax.tree.norm(grads))


def build(make_transform: MakeTransform, defaults: Mapping[str, Any]):
    """AlgoPerf's ``init_optimizer_state`` and ``update_params`` for one JAX baseline."""
    default_hp = as_hyperparameters(defaults)

    def transform(hp, workload) -> optax.GradientTransformation:
        tx = make_transform(hp, workload)
        clip = getattr(hp, "grad_clip", None)
        return optax.chain(optax.clip_by_global_norm(clip), tx) if clip is not None else tx

    def init_optimizer_state(workload: spec.Workload, model_params, model_state,
                             hyperparameters, rng) -> spec.OptimizerState:
        del model_state, rng
        tx = transform(resolve_hyperparameters(hyperparameters, default_hp), workload)
        return jax_sharding_utils.replicate(tx.init(model_params)), tx.update

    def update_params(workload: spec.Workload, current_param_container,
                      current_params_types, model_state, hyperparameters,
                      batch: Dict[str, Any], loss_type, optimizer_state, eval_results,
                      global_step: int, rng, train_state: Optional[Dict[str, Any]] = None
                      ) -> spec.UpdateReturn:
        del current_params_types, loss_type, eval_results, train_state
        hp = resolve_hyperparameters(hyperparameters, default_hp)
        opt_state, update_fn = optimizer_state
        params, model_state, opt_state, loss, grad_norm = _train_step(
            workload, update_fn, current_param_container, model_state, opt_state, batch,
            jnp.asarray(rng), float(getattr(hp, "dropout_rate", 0.0)),
            float(getattr(hp, "label_smoothing", 0.0)), hasattr(hp, "dropout_rate"))
        if should_log(global_step):
            scalars = {"loss": float(loss), "grad_norm": float(grad_norm)}
            if workload.metrics_logger is not None:
                workload.metrics_logger.append_scalar_metrics(scalars, global_step)
            logging.info("%d) loss = %0.3f, grad_norm = %0.3f", global_step, scalars["loss"],
                         scalars["grad_norm"])
        return (opt_state, update_fn), params, model_state

    return init_optimizer_state, update_params


def data_selection(workload, input_queue, optimizer_state, current_param_container,
                   model_state, hyperparameters, global_step, rng):
    """The next batch of the harness's shuffled, repeating input queue."""
    del workload, optimizer_state, current_param_container, model_state
    del hyperparameters, global_step, rng
    return next(input_queue)


def prepare_for_eval(workload, current_param_container, current_params_types, model_state,
                     hyperparameters, loss_type, optimizer_state, eval_results, global_step,
                     rng):
    """Nothing to do: first-order baselines evaluate their current parameters."""
    del workload, current_params_types, hyperparameters, loss_type, eval_results
    del global_step, rng
    return optimizer_state, current_param_container, model_state
