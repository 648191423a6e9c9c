"""Uncertainty and head-to-head comparisons beyond the published score.

**Bootstrap over studies.** A study is one complete, independent run of a submission on every
workload, so studies are what we resample: for each submission draw K of its K studies with
replacement (the same draw for all its workloads, since a study is one unit), take each
workload's median over the drawn studies, then push the whole table through the same held-out
rules, ratios and integral as the point estimate. The score's confidence interval is the
percentile interval of the replicates. Submissions are resampled independently of each other.

**Pairwise speedup.** ``speedup[a, b] = exp(mean_w log(t[b, w] / t[a, w]))``, the geometric
mean over the base workloads that both a and b reached (times before the held-out rules); above
1 means a reaches targets faster than b. ``workloads`` says how many workloads it rests on.
"""
import warnings
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd


def study_cubes(studies: pd.DataFrame, submissions: Sequence[str],
                workloads: Sequence[str]) -> List[np.ndarray]:
    """Per submission, an array ``[workloads, its studies]`` of study times; NaN = not run."""
    table = studies.pivot_table(index=["submission", "workload"], columns="study",
                                values="time", aggfunc="first", observed=True)
    cubes = []
    for submission in submissions:
        if submission in table.index.get_level_values(0):
            mine = table.loc[submission].reindex(index=list(workloads)).dropna(axis=1,
                                                                                how="all")
        else:
            mine = pd.DataFrame(index=list(workloads))
        cubes.append(mine.to_numpy(dtype=float) if mine.shape[1] else
                     np.full((len(workloads), 1), np.nan))
    return cubes


def bootstrap_workload_times(cubes: Sequence[np.ndarray], num_samples: int,
                             rng: np.random.Generator) -> np.ndarray:
    """Replicates of the submission x workload median table: ``[samples, S, W]``."""
    out = []
    for cube in cubes:
        num_studies = cube.shape[1]
        draws = rng.integers(0, num_studies, size=(num_samples, num_studies))
        sampled = cube[:, draws]                       # [W, samples, K]
        with warnings.catch_warnings():  # an all-NaN slice is a workload never run
            warnings.simplefilter("ignore", RuntimeWarning)
            medians = np.nanmedian(sampled, axis=-1)   # inf (misses) stay in the median
        out.append(np.where(np.isnan(medians), np.inf, medians).T)  # never run -> inf
    return np.stack(out, axis=1)


def bootstrap_scores(cubes: Sequence[np.ndarray], score_fn: Callable[[np.ndarray], np.ndarray],
                     num_samples: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """(score replicates ``[samples, S]``, time replicates ``[samples, S, W]``).

    ``score_fn`` maps a ``[..., S, W]`` table of median times (base and held-out columns) to
    scores ``[..., S]``: the same function as the point estimate.
    """
    rng = np.random.default_rng(seed)
    times = bootstrap_workload_times(cubes, num_samples, rng)
    return score_fn(times), times


def percentile_interval(samples: np.ndarray, confidence: float = 0.95,
                        axis: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail], axis=axis)
    return low, high


def speedup_matrix(times: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(speedup ``[..., S, S]``, number of shared workloads ``[S, S]``) from ``[..., S, W]``."""
    finite = np.isfinite(times) & (times > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_t = np.where(finite, np.log(np.where(finite, times, 1.0)), 0.0)
    both = finite[..., :, None, :] & finite[..., None, :, :]          # [..., a, b, W]
    diff = (log_t[..., None, :, :] - log_t[..., :, None, :]) * both   # log(t_b / t_a)
    count = both.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        speedup = np.exp(diff.sum(axis=-1) / count)
    return np.where(count > 0, speedup, np.nan), count


def speedup_frame(times: pd.DataFrame, samples: Optional[np.ndarray] = None,
                  confidence: float = 0.95) -> pd.DataFrame:
    """Long table: ``submission, baseline, speedup, workloads[, ci_low, ci_high]``."""
    speedup, count = speedup_matrix(times.to_numpy(dtype=float))
    names = list(times.index)
    rows = {"submission": np.repeat(names, len(names)), "baseline": np.tile(names, len(names)),
            "speedup": speedup.ravel(), "workloads": count.ravel()}
    if samples is not None and len(samples):
        replicates, _ = speedup_matrix(samples)
        with warnings.catch_warnings():  # pairs without a shared workload are all-NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanpercentile(replicates, [(1 - confidence) / 2 * 100,
                                                      (1 + confidence) / 2 * 100], axis=0)
        rows["ci_low"], rows["ci_high"] = low.ravel(), high.ravel()
    frame = pd.DataFrame(rows)
    return frame[frame["submission"] != frame["baseline"]].reset_index(drop=True)
