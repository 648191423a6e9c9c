"""AdamW with linear warmup and cosine decay, in JAX: AlgoPerf's AdamW baseline.

``optax.adamw`` is the rule of ``torch.optim.AdamW`` (decoupled decay, bias-corrected
moments); schedule and search spaces as the PyTorch submission beside it.
"""
import optax

from submissions import baseline_settings, jax_first_order
from submissions.optimizers import optax_schedules

HPARAMS = baseline_settings.ALGOPERF_NADAMW_SELF_TUNING


def make_transform(hp, workload):
    total = baseline_settings.schedule_length(workload, hp)
    schedule = optax_schedules.warmup_cosine(
        hp.learning_rate, optax_schedules.warmup_steps_for(hp.warmup_factor, total), total)
    return optax.adamw(schedule, b1=1.0 - hp.one_minus_beta1, b2=hp.beta2, eps=1e-8,
                       weight_decay=hp.weight_decay)


init_optimizer_state, update_params = jax_first_order.build(make_transform, HPARAMS)
get_batch_size = baseline_settings.get_batch_size
data_selection = jax_first_order.data_selection
prepare_for_eval = jax_first_order.prepare_for_eval
