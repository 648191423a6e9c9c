"""Self-tuning K-FAC-reduce that learns its per-layer weight decay by maximising the Laplace
marginal likelihood online (``submissions.kfac_marglik_common``; the expand flavour is
``submission_expand.py`` beside this file). No search space: run it with
``--tuning_ruleset=self``."""
from submissions import first_order, kfac_marglik_common

init_optimizer_state, update_params = kfac_marglik_common.build("reduce")
get_batch_size = first_order.get_batch_size
data_selection = first_order.data_selection
prepare_for_eval = first_order.prepare_for_eval
