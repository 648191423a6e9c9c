"""Scoring: time-to-target tables, performance profiles and AlgoPerf benchmark scores.

Notebook use::

    import scoring
    runs = scoring.load_runs("logs/external_tuning", targets="workload_targets_v05.json")
    result = scoring.score(runs)            # or scoring.score("logs/...", targets=...)
    result.scores, result.times, result.profiles, result.trials

Command line: ``algoperf score --submission_directory=... --targets_file=...``.
The rules are in ``scoring.rules`` and ``scoring.profiles``; see ``docs/scoring.md``.
"""
from scoring.api import ScoreResult, ScoringConfig, score, score_runs
from scoring.errors import ScoringInputError, StrictCheckError, TargetsUnavailableError
from scoring.reader import Runs, load_runs
from scoring.targets import TargetsTable, WorkloadTarget, load_targets, lower_is_better

__all__ = [
    "Runs", "ScoreResult", "ScoringConfig", "ScoringInputError", "StrictCheckError",
    "TargetsTable", "TargetsUnavailableError", "WorkloadTarget", "load_runs", "load_targets",
    "lower_is_better", "score", "score_runs",
]
