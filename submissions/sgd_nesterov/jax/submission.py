"""SGD with Nesterov momentum, linear warmup and linear decay, in JAX: AlgoPerf's Nesterov
baseline, the rule of ``torch.optim.SGD(nesterov=True)`` with coupled weight decay:

    g <- g + wd p;   buf <- b buf + g;   p <- p - lr (g + b buf)

(optax: add_decayed_weights, then sgd with a Nesterov trace). Schedule, defaults and search
spaces as the PyTorch submission beside it.
"""
import optax

from submissions import baseline_settings, jax_first_order
from submissions.optimizers import optax_schedules

HPARAMS = baseline_settings.SGD_NESTEROV_SELF_TUNING


def make_transform(hp, workload):
    total = baseline_settings.schedule_length(workload, hp)
    warmup = optax_schedules.warmup_steps_for(hp.warmup_factor, total)
    schedule = optax_schedules.warmup_linear_decay(
        hp.learning_rate, warmup, int((total - warmup) * hp.decay_steps_factor), hp.end_factor)
    return optax.chain(optax.add_decayed_weights(hp.weight_decay),
                       optax.sgd(schedule, momentum=1.0 - hp.one_minus_beta1, nesterov=True))


init_optimizer_state, update_params = jax_first_order.build(make_transform, HPARAMS)
get_batch_size = baseline_settings.get_batch_size
data_selection = jax_first_order.data_selection
prepare_for_eval = jax_first_order.prepare_for_eval
