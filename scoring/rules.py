"""AlgoPerf's scoring rules, from logged evals to one time per (submission, workload).

1. **Trial.** The first eval whose validation metric reaches the target; non-strict comparison
   (``value >= target``, or ``value <= target`` when lower is better); NaN never reaches. The
   trial's time to target is that eval's ``time`` (the ``score`` column). A trial that failed
   (``failed.json``) or never evaluated does not reach the target.
2. **Study.** Among its trials that reached the target, the one that did so at the smallest eval
   index; ties go to the smaller time. None reached it: infinity.
3. **Workload.** The median over the studies that ran it, infinities included (so a workload
   with 3 of 5 studies missing is infinite). A submission with no runs of a workload: infinity.
4. **Held-out variants (v0.5).** On the submission x workload table, in this order:
   (a) a held-out time is infinite if its base workload's is; (b) every time more than
   ``max_ratio`` (4) times the best time of its column is infinite; (c) a base time is
   infinite if its held-out variant's is. Then only the base columns are kept.

``value`` columns are compared in "higher is better" form internally: lower-is-better metrics
and their targets are negated, which keeps ``>=`` the one comparison in this module.
"""
from typing import Dict, Mapping, Sequence

import numpy as np
import pandas as pd

from scoring.targets import TargetsTable

STUDY_KEYS = ["submission", "workload", "study"]


def reached(values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rule 1's comparison, in higher-is-better form: ``values >= targets``; NaN is False."""
    with np.errstate(invalid="ignore"):
        return np.greater_equal(values, targets)


def oriented(values: np.ndarray, lower_is_better: np.ndarray) -> np.ndarray:
    """Negates lower-is-better values so that bigger is always better."""
    return np.where(lower_is_better, -values, values)


def trial_results(evals: pd.DataFrame, trials: pd.DataFrame,
                  targets: TargetsTable) -> pd.DataFrame:
    """One row per trial: did it reach the target, when, and how good did it get.

    Adds to ``trials``: ``target_metric, target_value, reached, eval_index_at_target,
    time_to_target`` (s, inf if missed), ``step_at_target, best_value, time_to_best,
    step_at_best, final_time, final_step``. A failed trial never counts as reached.
    """
    out = trials.copy()
    names = out["workload"].to_numpy()
    out["target_metric"] = [targets[w].metric for w in names]
    out["target_value"] = [targets[w].value for w in names]
    out["lower_is_better"] = [targets[w].lower_is_better for w in names]

    # Position of each eval's trial in ``out`` (evals are in logged order within a trial).
    trial_id = pd.Index(out["trial_id"]).get_indexer(evals["trial_id"].to_numpy())
    evals = evals[trial_id >= 0]
    trial_id = trial_id[trial_id >= 0]
    lower = out["lower_is_better"].to_numpy()[trial_id]
    value = oriented(evals["value"].to_numpy(dtype=float), lower)
    target = oriented(out["target_value"].to_numpy(dtype=float)[trial_id], lower)
    time = evals["time"].to_numpy(dtype=float)
    step = evals["global_step"].to_numpy(dtype=float)

    first_hit = _first_row_per_trial(trial_id, reached(value, target))
    failed = out["status"].to_numpy() == "failed"
    first_hit = {tid: row for tid, row in first_hit.items() if not failed[tid]}
    best_row = _best_row_per_trial(trial_id, value)
    last_row = _last_row_per_trial(trial_id)
    n = len(out)
    out["reached"] = _take(np.ones(len(evals), bool), first_hit, n, fill=False).astype(bool)
    eval_index = evals["eval_index"].to_numpy(dtype=float)
    out["eval_index_at_target"] = _take(eval_index, first_hit, n, fill=-1).astype(int)
    out["time_to_target"] = _take(time, first_hit, n, fill=np.inf)
    out["step_at_target"] = _take(step, first_hit, n)
    out["best_value"] = _take(evals["value"].to_numpy(dtype=float), best_row, n)
    out["time_to_best"] = _take(time, best_row, n)
    out["step_at_best"] = _take(step, best_row, n)
    out["final_time"] = _take(time, last_row, n)
    out["final_step"] = _take(step, last_row, n)
    return out


def _first_row_per_trial(trial_id: np.ndarray, mask: np.ndarray) -> Dict[int, int]:
    """{trial: first row where mask holds}; a trial's rows are in eval order."""
    rows = np.flatnonzero(mask)
    ids, first = np.unique(trial_id[rows], return_index=True)
    return dict(zip(ids.tolist(), rows[first].tolist()))


def _best_row_per_trial(trial_id: np.ndarray, value: np.ndarray) -> Dict[int, int]:
    """{trial_id: row of the best (largest oriented) non-NaN value, earliest on ties}."""
    ok = ~np.isnan(value)
    rows = np.flatnonzero(ok)
    order = np.lexsort((rows, -value[rows], trial_id[rows]))
    ids, first = np.unique(trial_id[rows][order], return_index=True)
    return dict(zip(ids.tolist(), rows[order][first].tolist()))


def _last_row_per_trial(trial_id: np.ndarray) -> Dict[int, int]:
    ids, first_from_end = np.unique(trial_id[::-1], return_index=True)
    return dict(zip(ids.tolist(), (len(trial_id) - 1 - first_from_end).tolist()))


def _take(source: np.ndarray, rows: Dict[int, int], n: int, fill=np.nan) -> np.ndarray:
    """A per-trial array: ``source[rows[trial_id]]`` where the trial has a row, else ``fill``."""
    out = np.full(n, fill, dtype=float)
    if rows:
        out[list(rows)] = source[list(rows.values())]
    return out


def study_times(trial_table: pd.DataFrame) -> pd.DataFrame:
    """Rule 2: one row per (submission, workload, study) with the chosen trial and its time.

    Columns: ``time`` (inf when no trial reached), ``trial`` (the chosen one, -1 if none),
    ``eval_index``, ``n_trials``, ``n_reached``.
    """
    keys = STUDY_KEYS
    winners = (trial_table[trial_table["reached"]]
               .sort_values(keys + ["eval_index_at_target", "time_to_target"], kind="stable")
               .drop_duplicates(keys)
               .set_index(keys)[["trial", "eval_index_at_target", "time_to_target"]])
    counts = trial_table.groupby(keys, observed=True, sort=True).agg(
        n_trials=("trial", "size"), n_reached=("reached", "sum"))
    out = counts.join(winners, how="left")
    out = out.rename(columns={"time_to_target": "time", "eval_index_at_target": "eval_index"})
    out["time"] = out["time"].fillna(np.inf)
    out["trial"] = out["trial"].fillna(-1).astype(int)
    out["eval_index"] = out["eval_index"].fillna(-1).astype(int)
    return out.reset_index()[keys + ["time", "trial", "eval_index", "n_trials", "n_reached"]]


def workload_times(studies: pd.DataFrame, submissions: Sequence[str],
                   workloads: Sequence[str]) -> pd.DataFrame:
    """Rule 3: submission x workload table of median study times (inf where never run)."""
    medians = studies.groupby(["submission", "workload"], observed=True)["time"].median()
    table = medians.unstack("workload")
    return table.reindex(index=list(submissions), columns=list(workloads)).fillna(np.inf)


def held_out_pairs(targets: TargetsTable, base_workloads: Sequence[str],
                   held_out_workloads: Sequence[str]) -> Dict[str, str]:
    """{held-out variant: its base workload}, for the variants whose base is scored."""
    pairs = {variant: targets.base_of(variant, base_workloads) for variant in held_out_workloads}
    return {variant: base for variant, base in pairs.items() if base in base_workloads}


def apply_held_out_rules(times: np.ndarray, columns: Sequence[str], pairs: Mapping[str, str],
                         max_ratio: float = 4.0) -> np.ndarray:
    """Rule 4 on an array ``[..., submissions, workloads]`` (batch axes allowed for bootstrap).

    Returns a copy; callers then keep the base columns.
    """
    times = np.array(times, dtype=float, copy=True)
    col = {name: i for i, name in enumerate(columns)}
    for variant, base in pairs.items():  # (a) variant is infinite where its base is
        times[..., col[variant]] = np.where(np.isinf(times[..., col[base]]), np.inf,
                                            times[..., col[variant]])
    best = np.min(times, axis=-2, keepdims=True)  # (b) more than max_ratio x the best
    with np.errstate(invalid="ignore"):
        times = np.where(times > max_ratio * best, np.inf, times)
    for variant, base in pairs.items():  # (c) base is infinite where its variant is
        times[..., col[base]] = np.where(np.isinf(times[..., col[variant]]), np.inf,
                                         times[..., col[base]])
    return times


def scored_times(raw: pd.DataFrame, base_workloads: Sequence[str], pairs: Mapping[str, str],
                 held_out: bool = True, max_ratio: float = 4.0) -> pd.DataFrame:
    """The submission x base-workload table the profiles are built from.

    ``raw`` has base and held-out columns; without held-out rules (v0.6 style) only the base
    columns are kept as they are.
    """
    if held_out:
        columns = list(raw.columns)
        filtered = apply_held_out_rules(raw.to_numpy(), columns, pairs, max_ratio)
        raw = pd.DataFrame(filtered, index=raw.index, columns=columns)
    return raw[list(base_workloads)].copy()
