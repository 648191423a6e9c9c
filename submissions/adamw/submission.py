"""AdamW with linear warmup and cosine decay: AlgoPerf's AdamW baseline.

torch.optim.AdamW already is the rule (decoupled decay p <- p - lr * wd * p, bias-corrected
moments), so nothing is re-implemented.
"""
import torch

from submissions import first_order

# Self-tuning (hyperparameters=None): AlgoPerf ships no self-tuning AdamW; its self-tuning
# NAdamW point (same names and meanings) is a sound start for AdamW too.
HPARAMS = first_order.ALGOPERF_NADAMW_SELF_TUNING


def make_optimizer(parameters, hp) -> torch.optim.AdamW:
    return torch.optim.AdamW(parameters, lr=hp.learning_rate,
                             betas=(1.0 - hp.one_minus_beta1, hp.beta2), eps=1e-8,
                             weight_decay=hp.weight_decay)


init_optimizer_state, update_params = first_order.build(
    make_optimizer, first_order.warmup_cosine_scheduler, HPARAMS)
get_batch_size = first_order.get_batch_size
data_selection = first_order.data_selection
prepare_for_eval = first_order.prepare_for_eval
