"""Rules of the benchmark that the runner and the scorer must apply alike (one copy of each).

Which way a metric improves, whether a value reaches a target, and the self-tuning budget.

A metric is *lower is better* when its name contains ``loss``, ``wer``, ``error``, ``ppl`` or
``perplexity`` (AlgoPerf's rule, plus perplexity), case-insensitively; every other metric
(accuracy, mean_average_precision, ssim, bleu) is *higher is better*. Reaching a target is the
non-strict comparison in that direction; NaN, infinities and missing values never reach one (an
``inf`` accuracy is a broken eval, not a perfect one).
"""
import math
from typing import Optional

LOWER_IS_BETTER_MARKERS = ("loss", "wer", "error", "ppl", "perplexity")
# Self-tuning submissions get this many times the workload's max_allowed_runtime_sec.
SELF_TUNING_BUDGET_FACTOR = 1.5


def budget_sec(max_allowed_runtime_sec: float, self_tuning: bool) -> float:
    return max_allowed_runtime_sec * (SELF_TUNING_BUDGET_FACTOR if self_tuning else 1.0)


def lower_is_better(metric_name: str) -> bool:
    name = metric_name.lower()
    return any(marker in name for marker in LOWER_IS_BETTER_MARKERS)


def reached(value: Optional[float], target: float, metric_name: str,
            lower: Optional[bool] = None) -> bool:
    """``value <= target`` for a lower-is-better metric, else ``value >= target``; ``lower``
    overrides the direction read from the name."""
    if value is None:
        return False
    value = float(value)
    if not math.isfinite(value):
        return False
    if lower is None:
        lower = lower_is_better(metric_name)
    return value <= target if lower else value >= target
