"""Hand-made log trees for the scoring tests (AlgoPerf's layout, written into a tmp folder).

``write_mini_tree(root)`` writes the *mini* tree whose scores are computed by hand in
``test_scoring_mini.py``. Workloads (``MINI_TARGETS``): ``alpha`` (accuracy >= 0.8) and
``beta`` (loss <= 0.5) are base workloads, ``alpha_variant`` (accuracy >= 0.7) is alpha's
held-out variant. Each trial below is a list of (time, metric value) evals.

    submission  study     alpha                   beta                    alpha_variant
    fast        study_0   t1 hits @1 at 20        t1 hits @1 at 20 (=)    t1 hits @0 at 30
                          t2 hits @0 at 25 <-     t2 NaN, hits @1 at 12 <-  t2 misses
    fast        study_1*  t1 hits @2 at 30 (=)    t1 misses               t1 hits @1 at 40
                          t2 FAILED (.9 at 5)     t2 hits @0 at 8         t2 misses
    slow        study_0   t1 hits at 115          t1 hits at 40           t1 hits at 60
    slow        study_1   t1 hits at 125          t1 hits at 30 (=)       t1 hits at 80
    broken      study_0   t1 truncated, hits 25   (no beta folder)        t1 all NaN
    broken      study_1   t1 hits at 35           t1 hits at 21           t1 misses

    @k: eval index k; <-: the trial the study keeps (earliest eval index, then smaller time);
    (=): the value equals the target exactly (counts: the comparison is non-strict);
    *: the folder is ``study_1-2024-01-02-03-04-05`` (a timestamp suffix, dropped from labels).

Plus a stray ``fast/study_0/trial_1/`` (a trial outside any workload folder).
"""
import json
import os
from typing import Iterable, Optional, Sequence, Tuple

MINI_TARGETS = {
    "base_workloads": ["alpha", "beta"],
    "held_out_workloads": ["alpha_variant"],
    "workloads": {
        "alpha": {"target_metric_name": "accuracy", "validation_target_value": 0.8,
                  "step_hint": 100},
        "beta": {"target_metric_name": "loss", "validation_target_value": 0.5,
                 "step_hint": 100},
        "alpha_variant": {"target_metric_name": "accuracy", "validation_target_value": 0.7,
                          "step_hint": 100},
    },
}

NAN = float("nan")


def csv_text(metric: str, evals: Sequence[Tuple[float, float]], step_every: int = 10) -> str:
    """An eval_measurements.csv with AlgoPerf's columns for ``evals`` = [(time, value)]."""
    header = ("accumulated_eval_time,accumulated_logging_time,accumulated_submission_time,"
              f"global_step,preemption_count,score,total_duration,validation/{metric},"
              "validation/num_examples")
    rows = []
    for i, (time, value) in enumerate(evals):
        value_text = "" if value != value else repr(value)  # NaN is written as an empty cell
        rows.append(f"{i * 1.5},{i * 0.1},{time},{(i + 1) * step_every},0,{time},"
                    f"{time + i * 1.6},{value_text},1000")
    return header + "\n" + "".join(row + "\n" for row in rows)


def write_trial(root: str, submission: str, study: str, workload: str, trial: int,
                evals: Optional[Iterable[Tuple[float, float]]] = None, metric: str = "accuracy",
                framework: str = "pytorch", text: Optional[str] = None,
                failed: Optional[str] = None, hparams: Optional[dict] = None) -> str:
    """Writes one trial folder; returns its path. ``text`` overrides the CSV contents."""
    path = os.path.join(root, submission, study, f"{workload}_{framework}", f"trial_{trial}")
    os.makedirs(path, exist_ok=True)
    if text is None and evals is not None:
        text = csv_text(metric, list(evals))
    if text is not None:
        with open(os.path.join(path, "eval_measurements.csv"), "w") as f:
            f.write(text)
    if failed is not None:
        with open(os.path.join(path, "failed.json"), "w") as f:
            json.dump({"failed": True, "reason": failed, "global_step": 10}, f)
    with open(os.path.join(path, "hparams.json"), "w") as f:
        json.dump(hparams or {"learning_rate": 0.001 * trial}, f)
    return path


def write_targets(path: str, table: dict = MINI_TARGETS) -> str:
    with open(path, "w") as f:
        json.dump(table, f)
    return path


def write_mini_tree(root: str) -> str:
    """The tree of the module docstring; returns ``root``."""
    acc, loss = "accuracy", "loss"
    s1 = "study_1-2024-01-02-03-04-05"
    # fast
    write_trial(root, "fast", "study_0", "alpha", 1, [(10, .5), (20, .81), (30, .9)], acc)
    write_trial(root, "fast", "study_0", "alpha", 2, [(25, .85), (35, .9)], acc)
    write_trial(root, "fast", "study_0", "beta", 1, [(10, 1.0), (20, 0.5)], loss)
    write_trial(root, "fast", "study_0", "beta", 2, [(5, NAN), (12, 0.4)], loss)
    write_trial(root, "fast", "study_0", "alpha_variant", 1, [(30, .7)], acc)
    write_trial(root, "fast", "study_0", "alpha_variant", 2, [(30, .6), (50, .65)], acc)
    write_trial(root, "fast", s1, "alpha", 1, [(10, .5), (20, .6), (30, .8)], acc)
    write_trial(root, "fast", s1, "alpha", 2, [(5, .9)], acc, failed="loss became NaN")
    write_trial(root, "fast", s1, "beta", 1, [(10, 0.6), (20, 0.55)], loss)
    write_trial(root, "fast", s1, "beta", 2, [(8, 0.3)], loss)
    write_trial(root, "fast", s1, "alpha_variant", 1, [(20, .5), (40, .75)], acc)
    write_trial(root, "fast", s1, "alpha_variant", 2, [(20, .5)], acc)
    # slow: one trial per study
    write_trial(root, "slow", "study_0", "alpha", 1, [(115, .8)], acc)
    write_trial(root, "slow", "study_0", "beta", 1, [(20, .9), (40, .45)], loss)
    write_trial(root, "slow", "study_0", "alpha_variant", 1, [(60, .71)], acc)
    write_trial(root, "slow", "study_1", "alpha", 1, [(125, .81)], acc)
    write_trial(root, "slow", "study_1", "beta", 1, [(30, .5)], loss)
    write_trial(root, "slow", "study_1", "alpha_variant", 1, [(40, .6), (80, .7)], acc)
    # broken: a truncated CSV, a missing workload folder, an all-NaN trial
    truncated = csv_text(acc, [(10, .5), (25, .82)]) + "2,0.2,40.0,30"
    write_trial(root, "broken", "study_0", "alpha", 1, text=truncated)
    write_trial(root, "broken", "study_0", "alpha_variant", 1, [(10, NAN), (20, NAN)], acc)
    write_trial(root, "broken", "study_1", "alpha", 1, [(35, .8)], acc)
    write_trial(root, "broken", "study_1", "beta", 1, [(21, .2)], loss)
    write_trial(root, "broken", "study_1", "alpha_variant", 1, [(10, .1)], acc)
    # a stray trial folder that is not inside a workload folder
    stray = os.path.join(root, "fast", "study_0", "trial_1")
    os.makedirs(stray, exist_ok=True)
    with open(os.path.join(stray, "eval_measurements.csv"), "w") as f:
        f.write(csv_text(acc, [(1, 1.0)]))
    return root


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_score_cli(*args: str, cwd: Optional[str] = None):
    """``algoperf score <args>`` in a fresh process, as a user runs it."""
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=REPO, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "algoperf.cli", "score", *args],
                          capture_output=True, text=True, timeout=300, env=env,
                          cwd=cwd or REPO)
