"""NAdamW with linear warmup and cosine decay: AlgoPerf's NAdamW baseline.

The update rule is AlgoPerf's (``submissions.optimizers.nadamw``), not torch.optim.NAdam.
"""
from submissions import first_order
from submissions.optimizers.nadamw import NAdamW

# Self-tuning (hyperparameters=None): AlgoPerf's self-tuning NAdamW point.
HPARAMS = first_order.ALGOPERF_NADAMW_SELF_TUNING


def make_optimizer(parameters, hp) -> NAdamW:
    return NAdamW(parameters, lr=hp.learning_rate, betas=(1.0 - hp.one_minus_beta1, hp.beta2),
                  eps=1e-8, weight_decay=hp.weight_decay)


init_optimizer_state, update_params = first_order.build(
    make_optimizer, first_order.warmup_cosine_scheduler, HPARAMS)
get_batch_size = first_order.get_batch_size
data_selection = first_order.data_selection
prepare_for_eval = first_order.prepare_for_eval
