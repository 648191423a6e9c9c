"""Performance profiles and the AlgoPerf benchmark score.

For submission s and base workload w with time to target t[s, w] (after the held-out rules):

    r[s, w]  = t[s, w] / min_s' t[s', w]            (or / t[reference, w])
    rho_s(tau) = (1 / N) * #{w : r[s, w] <= tau}      N = number of base workloads, fixed:
                                                      a missing workload counts as a miss
    score_s  = 1 / (r_max - 1) * integral_1^r_max rho_s(tau) dtau

Two ways to take the integral:

- ``trapezoid`` (default): the trapezoid rule on ``numpy.linspace(1, r_max, num_points)`` with
  100 points, as AlgoPerf does; this reproduces the published numbers bit for bit.
- ``exact``: rho is a step function, so the integral is a sum of rectangles:
  ``score_s = 1/N * sum_w max(0, r_max - max(r[s, w], 1)) / (r_max - 1)`` over ``r <= r_max``.

Infinite or undefined ratios (inf / inf when nobody reached a workload) never count.
Arrays are ``[..., submissions, workloads]`` so the bootstrap can push a batch through at once.
"""
from typing import Optional

import numpy as np
import pandas as pd

INTEGRALS = ("trapezoid", "exact")


def ratios(times: np.ndarray, reference: Optional[np.ndarray] = None) -> np.ndarray:
    """``times / best``: best is the column minimum, or the reference submission's times."""
    best = np.min(times, axis=-2, keepdims=True) if reference is None else reference
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.asarray(times, float) / best
    return np.where(np.isnan(r), np.inf, r)


def tau_grid(r_max: float = 4.0, num_points: int = 100) -> np.ndarray:
    return np.linspace(1.0, r_max, num_points)


def profile(r: np.ndarray, taus: np.ndarray, num_workloads: int) -> np.ndarray:
    """rho(tau) for every tau: ``[..., submissions, len(taus)]``."""
    hits = r[..., :, None] <= taus  # [..., S, W, T]
    return hits.sum(axis=-2) / num_workloads


def score_trapezoid(r: np.ndarray, num_workloads: int, r_max: float = 4.0,
                    num_points: int = 100) -> np.ndarray:
    taus = tau_grid(r_max, num_points)
    return np.trapezoid(profile(r, taus, num_workloads), taus, axis=-1) / (r_max - 1.0)


def score_exact(r: np.ndarray, num_workloads: int, r_max: float = 4.0) -> np.ndarray:
    """Exact area under the step function rho over [1, r_max], normalised to [0, 1]."""
    area = np.clip(r_max - np.maximum(r, 1.0), 0.0, None)  # inf ratio -> 0
    return area.sum(axis=-1) / num_workloads / (r_max - 1.0)


def benchmark_scores(r: np.ndarray, num_workloads: int, r_max: float = 4.0,
                     integral: str = "trapezoid", num_points: int = 100) -> np.ndarray:
    if integral == "trapezoid":
        return score_trapezoid(r, num_workloads, r_max, num_points)
    if integral == "exact":
        return score_exact(r, num_workloads, r_max)
    raise ValueError(f"integral must be one of {INTEGRALS}, got {integral!r}")


def profile_frame(r: pd.DataFrame, num_workloads: int, r_max: float = 4.0,
                  num_points: int = 100) -> pd.DataFrame:
    """rho(tau) as a DataFrame: one row per submission, one column per tau."""
    taus = tau_grid(r_max, num_points)
    return pd.DataFrame(profile(r.to_numpy(), taus, num_workloads), index=r.index,
                        columns=pd.Index(taus, name="tau"))
