"""The scoring pipeline as DataFrames: one function for notebooks, the same one the CLI calls.

    result = scoring.score("logs/external_tuning", targets="workload_targets_v05.json")
    result.scores        # one row per submission: score, rank, workloads reached, CI
    result.times         # submission x base workload: time to target (s) after held-out rules
    result.raw_times     # the same before the held-out rules, held-out columns included
    result.ratios        # times / best time of the column (or / the reference submission)
    result.profiles      # rho(tau): one row per submission, one column per tau
    result.trials        # one row per trial: reached, time to target, best value, ...
    result.studies       # one row per (submission, workload, study): the trial that counts
    result.speedups      # pairwise geometric-mean speedups
    result.notes         # what was odd about the folder (strays, failures, gaps)

Steps: ``scoring.reader`` -> ``scoring.rules`` (trial, study, workload, held-out) ->
``scoring.profiles`` (ratios, rho, integral) -> ``scoring.stats`` (bootstrap, speedups).
"""
import dataclasses
from typing import List, Optional, Sequence, Union

import numpy as np
import pandas as pd

from scoring import checks, profiles, rules, stats
from scoring.errors import ScoringInputError
from scoring.reader import TIME_COLUMN, Runs, load_runs
from scoring.targets import TargetsTable


@dataclasses.dataclass(frozen=True)
class ScoringConfig:
    """How to score. Defaults are AlgoPerf v0.5's rules (external tuning)."""
    base_workloads: Optional[Sequence[str]] = None      # None: the targets table's list
    held_out_workloads: Optional[Sequence[str]] = None  # None: the targets table's list
    held_out: bool = True          # False: v0.6 style, base workloads only, no 4x rule
    max_ratio: float = 4.0         # the held-out rule's "more than 4x the best" cut
    r_max: float = 4.0             # upper end of the tau range of the profile and integral
    integral: str = "trapezoid"    # or "exact"
    num_points: int = 100          # tau grid of the trapezoid rule
    reference_submission: Optional[str] = None  # ratios to this one instead of the best
    self_tuning_ruleset: bool = False
    strict: bool = False           # gaps in studies/trials/workloads are errors
    num_studies: int = 5
    num_trials: Optional[int] = None  # None: 5 external tuning, 1 self-tuning
    submissions: Optional[Sequence[str]] = None  # score only these
    bootstrap_samples: int = 0     # 0: no confidence intervals
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self):
        if not self.r_max > 1.0:
            raise ValueError(f"r_max must be above 1, got {self.r_max}")
        if self.integral not in profiles.INTEGRALS:
            raise ValueError(f"integral must be one of {profiles.INTEGRALS}, "
                             f"got {self.integral!r}")
        if self.num_points < 2:
            raise ValueError(f"num_points must be at least 2, got {self.num_points}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.max_ratio < 1.0:
            raise ValueError(f"max_ratio must be at least 1, got {self.max_ratio}")

    @property
    def expected_trials(self) -> int:
        if self.num_trials is not None:
            return self.num_trials
        return 1 if self.self_tuning_ruleset else 5


@dataclasses.dataclass
class ScoreResult:
    config: ScoringConfig
    base_workloads: List[str]
    held_out_workloads: List[str]
    scores: pd.DataFrame
    times: pd.DataFrame
    raw_times: pd.DataFrame
    ratios: pd.DataFrame
    profiles: pd.DataFrame
    trials: pd.DataFrame
    studies: pd.DataFrame
    speedups: pd.DataFrame
    notes: pd.DataFrame
    runs: Runs
    bootstrap: Optional[np.ndarray] = None  # score replicates [samples, submissions]


def score(runs_or_directory: Union[Runs, str], targets=None,
          config: Optional[ScoringConfig] = None, time_column: str = TIME_COLUMN,
          ignore_unknown_workloads: bool = False, **overrides) -> ScoreResult:
    """Scores a folder of runs (or runs already loaded with ``load_runs``).

    Keyword overrides are ``ScoringConfig`` fields, e.g. ``score(path, targets, r_max=8)``.
    """
    config = dataclasses.replace(config or ScoringConfig(), **overrides)
    runs = runs_or_directory
    if not isinstance(runs, Runs):
        runs = load_runs(runs, targets, time_column=time_column,
                         ignore_unknown_workloads=ignore_unknown_workloads)
    return score_runs(runs, config)


def score_runs(runs: Runs, config: ScoringConfig) -> ScoreResult:
    table = runs.targets
    base, held_out = _workload_sets(table, config)
    trials = _selected(runs.trials, config, runs.root)
    _check_some_scored_workload_ran(trials, base, runs.root)
    notes = list(runs.notes.itertuples(index=False, name=None))
    gaps = checks.completeness_notes(trials, base + held_out, config.num_studies,
                                     config.expected_trials)
    if config.strict:
        checks.enforce(gaps, runs.root)
    notes += gaps

    evals = _within_budget(runs.evals, trials, table, config.self_tuning_ruleset, notes)
    trials = rules.trial_results(evals, trials, table)
    studies = rules.study_times(trials)
    submissions = sorted(trials["submission"].unique())
    raw = rules.workload_times(studies, submissions, base + held_out)
    pairs = rules.held_out_pairs(table, base, held_out)
    score_fn = _score_function(config, base, held_out, pairs, submissions, runs.root)

    times = rules.scored_times(raw, base, pairs, config.held_out, config.max_ratio)
    reference = _reference_row(times, config)
    ratio = pd.DataFrame(profiles.ratios(times.to_numpy(), reference), index=times.index,
                         columns=times.columns)
    point = score_fn(raw.to_numpy())
    scores = pd.DataFrame({"score": point,
                           "workloads_reached": np.isfinite(times.to_numpy()).sum(axis=1),
                           "num_workloads": len(base)}, index=pd.Index(submissions,
                                                                       name="submission"))
    samples, speedup_samples = None, None
    cubes = stats.study_cubes(studies, submissions, base + held_out)
    # With one study per cell every replicate is the point estimate: no interval to print.
    if config.bootstrap_samples > 0 and max(cube.shape[1] for cube in cubes) > 1:
        samples, time_samples = stats.bootstrap_scores(cubes, score_fn,
                                                       config.bootstrap_samples, config.seed)
        scores["ci_low"], scores["ci_high"] = stats.percentile_interval(samples,
                                                                       config.confidence)
        speedup_samples = time_samples[..., :len(base)]
    scores["rank"] = scores["score"].rank(ascending=False, method="min").astype(int)
    scores = scores.sort_values(["score"], ascending=False, kind="stable")
    speedups = stats.speedup_frame(raw[base], speedup_samples, config.confidence)
    return ScoreResult(
        config=config, base_workloads=base, held_out_workloads=held_out, scores=scores,
        times=times, raw_times=raw, ratios=ratio,
        profiles=profiles.profile_frame(ratio, len(base), config.r_max, config.num_points),
        trials=trials, studies=studies, speedups=speedups,
        notes=pd.DataFrame(notes, columns=["path", "kind", "message"]), runs=runs,
        bootstrap=samples)


def _within_budget(evals: pd.DataFrame, trials: pd.DataFrame, table: TargetsTable,
                   self_tuning: bool, notes: list) -> pd.DataFrame:
    """Evals logged after a trial's budget was spent do not count (their value becomes NaN).

    The runner gives no eval once the budget is spent, so such rows mean a submission moved
    its own budget (or a different harness's logs). The budget is the targets table's
    ``max_allowed_runtime_sec`` (x1.5 for self-tuning), else the one the trial logged."""
    from algoperf.benchmark_rules import budget_sec
    from_table = trials["workload"].map(
        lambda w: np.nan if table[w].max_allowed_runtime_sec is None
        else budget_sec(table[w].max_allowed_runtime_sec, self_tuning))
    logged = trials["budget"] if "budget" in trials else np.nan
    budget = from_table.fillna(logged).to_numpy(dtype=float)
    budget_of = np.full(int(trials["trial_id"].max()) + 1 if len(trials) else 0, np.nan)
    budget_of[trials["trial_id"].to_numpy()] = budget
    row_budget = budget_of[evals["trial_id"].to_numpy()] if len(budget_of) else np.array([])
    over = evals["time"].to_numpy() > row_budget  # NaN budget: never over
    if not over.any():
        return evals
    paths = trials.set_index("trial_id")["path"]
    for trial_id in np.unique(evals["trial_id"].to_numpy()[over]):
        rows = over & (evals["trial_id"].to_numpy() == trial_id)
        notes.append((paths[trial_id], "over_budget",
                      f"{int(rows.sum())} evals after the budget of {budget_of[trial_id]:g} s "
                      f"(first at {evals['time'].to_numpy()[rows][0]:g} s) do not count"))
    evals = evals.copy()
    evals.loc[over, "value"] = np.nan
    return evals


def _workload_sets(table: TargetsTable, config: ScoringConfig):
    base = list(config.base_workloads or table.base_workloads)
    held_out = list(config.held_out_workloads if config.held_out_workloads is not None
                    else table.held_out_workloads) if config.held_out else []
    if not base:
        raise ScoringInputError(table.source, "no base workloads: the targets table lists "
                                "none; pass base_workloads (--base_workloads)")
    for name in base + held_out:
        table[name]  # raises, naming the targets source, for an unknown workload
    return base, held_out


def _selected(trials: pd.DataFrame, config: ScoringConfig, root: str) -> pd.DataFrame:
    if config.submissions is None:
        return trials
    known = set(trials["submission"])
    missing = [s for s in config.submissions if s not in known]
    if missing:
        raise ScoringInputError(root, f"no runs of submission(s) {', '.join(missing)}; "
                                f"found: {', '.join(sorted(known))}")
    return trials[trials["submission"].isin(config.submissions)].reset_index(drop=True)


def _check_some_scored_workload_ran(trials: pd.DataFrame, base: List[str], root: str) -> None:
    """Scoring folders with none of the base workloads is a mistake, not a row of zeros."""
    if not trials["workload"].isin(base).any():
        found = ", ".join(sorted(trials["workload"].unique()))
        raise ScoringInputError(root, f"no runs of any base workload ({', '.join(base)}); "
                                f"runs found of: {found}. Pass --base_workloads")


def _reference_row(times: pd.DataFrame, config: ScoringConfig) -> Optional[np.ndarray]:
    if config.reference_submission is None:
        return None
    return times.loc[[config.reference_submission]].to_numpy()


def _score_function(config: ScoringConfig, base, held_out, pairs, submissions, root):
    """Median-time table ``[..., S, base + held_out]`` -> scores ``[..., S]``.

    One function for the point estimate and every bootstrap replicate, so both follow exactly
    the same rules.
    """
    columns = base + held_out
    reference_index = None
    if config.reference_submission is not None:
        if config.reference_submission not in submissions:
            raise ScoringInputError(root, f"reference submission "
                                    f"{config.reference_submission!r} has no runs here")
        reference_index = submissions.index(config.reference_submission)

    def score_fn(raw_times: np.ndarray) -> np.ndarray:
        times = raw_times
        if config.held_out:
            times = rules.apply_held_out_rules(times, columns, pairs, config.max_ratio)
        times = times[..., :len(base)]
        reference = None
        if reference_index is not None:
            reference = times[..., reference_index:reference_index + 1, :]
        r = profiles.ratios(times, reference)
        return profiles.benchmark_scores(r, len(base), config.r_max, config.integral,
                                         config.num_points)

    return score_fn
