"""Self-tuning K-FAC-expand that learns its per-layer weight decay by maximising the Laplace
marginal likelihood online (``submissions.kfac_marglik_common``; ``submission.py`` beside
this file is the reduce flavour). No search space: run it with ``--tuning_ruleset=self``."""
from submissions import first_order, kfac_marglik_common

init_optimizer_state, update_params = kfac_marglik_common.build("expand")
get_batch_size = first_order.get_batch_size
data_selection = first_order.data_selection
prepare_for_eval = first_order.prepare_for_eval
