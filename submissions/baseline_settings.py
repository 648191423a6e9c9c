"""What the first-order baselines share in every framework: batch sizes, the self-tuning point,
hyperparameters as AlgoPerf passes them, the schedule's length and the logging cadence."""
import collections
from typing import Any, Mapping

# Global batch sizes of AlgoPerf's baselines (cifar from its development algorithms). A name
# not here (a variant such as 'mnist_tiny') raises ValueError: the runner then asks again
# with the base workload's name.
BATCH_SIZES = {
    "cifar": 128,
    "cifar_wrn": 128,
    "criteo1tb": 262_144,
    "fastmri": 32,
    "imagenet_resnet": 1024,
    "imagenet_resnet_silu": 512,
    "imagenet_resnet_gelu": 512,
    "imagenet_vit": 1024,
    "librispeech_conformer": 256,
    "librispeech_deepspeech": 256,
    "mnist": 16,
    "ogbg": 512,
    "wmt": 128,
}

# The point AlgoPerf's self-tuning NAdamW baseline uses (also the last of the five points in
# its qualification baselines' external-tuning list).
ALGOPERF_NADAMW_SELF_TUNING = {
    "dropout_rate": 0.1,
    "learning_rate": 0.0017486387539278373,
    "one_minus_beta1": 0.06733926164,
    "beta2": 0.9955159689799007,
    "weight_decay": 0.08121616522670176,
    "warmup_factor": 0.02,
}


# The self-tuning point of the SGD + Nesterov baseline.
SGD_NESTEROV_SELF_TUNING = {
    "dropout_rate": 0.0,
    "label_smoothing": 0.0,
    "learning_rate": 0.1,
    "one_minus_beta1": 0.1,
    "weight_decay": 1e-6,
    "warmup_factor": 0.05,
    "decay_steps_factor": 0.9,
    "end_factor": 0.01,
}


def get_batch_size(workload_name: str) -> int:
    """The global batch size for ``workload_name``; ValueError for names it does not know."""
    if workload_name not in BATCH_SIZES:
        raise ValueError(f"No baseline batch size for workload {workload_name!r} "
                         f"(known: {', '.join(sorted(BATCH_SIZES))})")
    return BATCH_SIZES[workload_name]


def as_hyperparameters(point: Mapping[str, Any]) -> Any:
    """A dict of hyperparameters as the namedtuple AlgoPerf passes (``hp.learning_rate``)."""
    return collections.namedtuple("Hyperparameters", point)(**point)


def resolve_hyperparameters(hyperparameters: Any, default_hp: Any) -> Any:
    """The trial's point (external tuning), or ``default_hp`` when it is None (self-tuning)."""
    if hyperparameters is None:
        return default_hp
    if isinstance(hyperparameters, Mapping):
        return as_hyperparameters(hyperparameters)
    return hyperparameters


def schedule_length(workload: Any, hp: Any) -> float:
    """Steps the schedule spans: step_hint * step_hint_factor (default 1.0)."""
    return workload.step_hint * getattr(hp, "step_hint_factor", 1.0)


def should_log(global_step: int) -> bool:
    """AlgoPerf's cadence: every step early on, then sparsely (reading the loss syncs the
    device)."""
    return global_step <= 100 or global_step % 500 == 0
