"""K-FAC-expand (Eschenhagen et al., NeurIPS 2023) with momentum, KL-clipping and warmup + cosine.

The optimizer is ``submissions.optimizers.kfac.KFAC``; the step and the hyperparameters are
``submissions.kfac_baseline``'s. Batch sizes are the first-order baselines' (AlgoPerf's).
"""
from submissions import first_order, kfac_baseline

init_optimizer_state, update_params = kfac_baseline.build("expand")
get_batch_size = first_order.get_batch_size
data_selection = first_order.data_selection
prepare_for_eval = first_order.prepare_for_eval
