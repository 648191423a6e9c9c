"""SGD with Nesterov momentum, linear warmup and linear decay: AlgoPerf's Nesterov baseline.

torch.optim.SGD(nesterov=True) is the rule, with momentum b = 1 - one_minus_beta1 and
weight decay coupled into the gradient (g <- g + wd * p), as in AlgoPerf's baseline:
    buf <- b * buf + g;   p <- p - lr * (g + b * buf)
The schedule decays linearly to end_factor * lr over decay_steps_factor of the post-warmup
steps, then holds (``first_order.warmup_linear_decay_scheduler``).
"""
import torch

from submissions import first_order

# Self-tuning (hyperparameters=None): momentum 0.9 and a moderate rate, inside the search space.
HPARAMS = first_order.SGD_NESTEROV_SELF_TUNING


def make_optimizer(parameters, hp) -> torch.optim.SGD:
    return torch.optim.SGD(parameters, lr=hp.learning_rate, momentum=1.0 - hp.one_minus_beta1,
                           weight_decay=hp.weight_decay, nesterov=True)


init_optimizer_state, update_params = first_order.build(
    make_optimizer, first_order.warmup_linear_decay_scheduler, HPARAMS)
get_batch_size = first_order.get_batch_size
data_selection = first_order.data_selection
prepare_for_eval = first_order.prepare_for_eval
