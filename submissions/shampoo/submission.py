"""Shampoo (blocked, Adam-grafted, roots every k steps): the AlgoPerf v0.5 external-tuning
winner's algorithm as a baseline, on the shared first-order training step.

Update rule: ``submissions.optimizers.shampoo.Shampoo`` (Distributed Shampoo's rule, written
for this project). Training step and warmup + cosine schedule: ``submissions.first_order``
(the step of the AdamW / NAdamW / SGD baselines, which is also the step of AlgoPerf's Shampoo
submission: global-mean loss, optional clipping, optimizer.step(), scheduler.step()).

Search space (``tuning_search_space.json``): the five points of the winning submission
(AlgoPerf_Team_21 ``shampoo_submission``, external tuning, score 0.7784), copied value for value
from the ``hparams.json`` files of its official v0.5 logs (``../shared/algoperf_v05/logs.tar.xz``,
``external_tuning/shampoo_submission/study_*/<workload>_pytorch/trial_<k>/hparams.json``; every
study and workload ran the same five points). All use max_preconditioner_dim 1024,
precondition_frequency 100, start_preconditioning_step -1 (= frequency), epsilon 1e-8; four
graft Adam (grafting epsilon 1e-8, grafting beta2 = beta2), one grafts SGD with momentum.

How the points' names map to the optimizer (as in that submission's ``init_optimizer_state``):
betas = (1 - one_minus_beta1, 1 - one_minus_beta2); momentum = 1 - one_minus_momentum if
use_momentum else 0, always Nesterov; use_nadam; bias correction on; decoupled weight decay;
schedule warmup_factor * T linear warmup then cosine to 0 at T = step_hint_factor * step_hint
(use_cosine_decay is true in all five points). Names that only configure Distributed Shampoo's
communication (communication_dtype, communicate_params) do not apply here: every process computes
the same roots from the all-reduced gradients. Like Distributed Shampoo, 1-D parameters (biases,
norms) are preconditioned with a full-matrix factor (``precondition_1d=True``; a point may set
``precondition_1d: false`` to give them the grafted first-order update instead).

Tiny tier (our deviation, documented): the points' frequency 100 was chosen for workloads of
52,000-168,000 steps (500+ root refreshes). A ``_tiny`` workload has step_hint 250-2,000, where
frequency 100 would precondition for one or two intervals at most. The frequency used is
therefore min(precondition_frequency, max(1, step_hint // MIN_ROOT_REFRESHES)): at least 10
refreshes per schedule. For every full-size workload (step_hint >= 1,000) this leaves the
point's frequency unchanged; cifar_wrn_tiny (step_hint 250) gets 25 (preconditioning from step
25), mnist_tiny (2,000) keeps 100. 10, not more: one refresh of WRN-10-1's factors (DS's merge
rule gives 1024- and 768-sized ones) costs ~1.3 s on one CPU thread, ~3 forward-backward
passes; every 25 steps that is ~15% of a step. A point may set ``min_root_refreshes`` (0
turns the rule off).

``tuning_search_space_tiny.json`` (two points, for the tiny tier): the winner's Shampoo settings
(block 1024, frequency 100 -> scaled as above, epsilon 1e-8, Adam grafting, NAdam, no momentum)
with the first-order hyperparameters of the NAdamW points that set the tiny targets: point 1 is
cifar_wrn_tiny's and ogbg_tiny's (``workloads/cifar_wrn/tiny_targets.json``: lr 0.003, b1 0.9,
b2 0.999, wd 0.05, warmup 0.05, no label smoothing, no dropout), point 2 the same with
imagenet_vit_tiny's lr 0.01 (``workloads/imagenet_vit/tiny_point.json``); run it with
``--num_tuning_trials=2`` for AlgoPerf's best-of-trials. The v0.5 points' learning rates
(0.0012-0.0017, or SGD grafting at lr 4.2) were tuned for full-size schedules and miss the
120 s cifar_wrn_tiny budget.
"""
from submissions import first_order
from submissions.optimizers.shampoo import Shampoo

MIN_ROOT_REFRESHES = 10

# Self-tuning (hyperparameters=None): the first point of the winning search space.
HPARAMS = {
    "learning_rate": 0.0017486387539278373,
    "one_minus_beta1": 0.06733926164,
    "one_minus_beta2": 0.00448403102,
    "epsilon": 1e-08,
    "one_minus_momentum": 0.0,
    "use_momentum": False,
    "weight_decay": 0.08121616522670176,
    "max_preconditioner_dim": 1024,
    "precondition_frequency": 100,
    "start_preconditioning_step": -1,
    "inv_root_override": 0,
    "exponent_multiplier": 1.0,
    "grafting_type": "ADAM",
    "grafting_epsilon": 1e-08,
    "use_normalized_grafting": False,
    "use_cosine_decay": True,
    "warmup_factor": 0.02,
    "label_smoothing": 0.0,
    "dropout_rate": 0.1,
    "use_nadam": True,
    "step_hint_factor": 1.0,
}


def effective_frequency(hp, step_hint: int) -> int:
    """The point's frequency, lowered so that a schedule of ``step_hint`` steps refreshes its
    roots at least ``min_root_refreshes`` times (module docstring)."""
    frequency = int(hp.precondition_frequency)
    refreshes = getattr(hp, "min_root_refreshes", MIN_ROOT_REFRESHES)
    if refreshes <= 0:
        return frequency
    return min(frequency, max(1, int(step_hint) // int(refreshes)))


def make_optimizer(parameters, hp) -> Shampoo:
    if getattr(hp, "use_normalized_grafting", False):
        raise ValueError("shampoo submission: use_normalized_grafting=true is not supported")
    if not getattr(hp, "use_cosine_decay", True):
        raise ValueError("shampoo submission: use_cosine_decay=false is not supported "
                         "(the shared schedule is warmup + cosine)")
    return Shampoo(
        parameters, lr=hp.learning_rate,
        betas=(1.0 - hp.one_minus_beta1, 1.0 - hp.one_minus_beta2), epsilon=hp.epsilon,
        momentum=1.0 - hp.one_minus_momentum if hp.use_momentum else 0.0, nesterov=True,
        weight_decay=hp.weight_decay, max_preconditioner_dim=int(hp.max_preconditioner_dim),
        precondition_frequency=int(hp.precondition_frequency),
        start_preconditioning_step=int(hp.start_preconditioning_step),
        inv_root_override=int(hp.inv_root_override),
        exponent_multiplier=hp.exponent_multiplier, use_nadam=hp.use_nadam,
        use_bias_correction=True, grafting=hp.grafting_type.lower(),
        grafting_beta2=1.0 - hp.one_minus_beta2, grafting_epsilon=hp.grafting_epsilon,
        precondition_1d=getattr(hp, "precondition_1d", True))


_init_optimizer_state, update_params = first_order.build(
    make_optimizer, first_order.warmup_cosine_scheduler, HPARAMS)
get_batch_size = first_order.get_batch_size
data_selection = first_order.data_selection
prepare_for_eval = first_order.prepare_for_eval


def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
    """The shared step's optimizer state, with the frequency scaled to the workload's
    step_hint (tiny tier only; module docstring)."""
    hp = first_order.resolve_hyperparameters(hyperparameters, first_order.as_hyperparameters(
        HPARAMS))
    point = dict(hp._asdict())
    point["precondition_frequency"] = effective_frequency(hp, workload.step_hint)
    return _init_optimizer_state(workload, model_params, model_state,
                                 first_order.as_hyperparameters(point), rng)
