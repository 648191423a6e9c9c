"""``algoperf check``: does a submission work here, before it spends GPU hours?

For each workload (default: every ``_tiny`` one), in a scratch folder, through the same code
path as ``algoperf run``:

    run     --max_global_steps=STEPS            load, init, STEPS steps, evals, checkpoints
    resume  --max_global_steps=STEPS+MORE       load the checkpoint, MORE steps, a final eval
    logs    every eval once, steps increasing, one preemption

and one line per workload: ``ok``, or the first error with the submission's own file and line.
Hyperparameters: the first point of the search space (its ``_tiny`` file on a tiny workload,
as the suite does), or ``None`` (self-tuning) when the submission has no search space.
"""
import dataclasses
import os
import tempfile
import time
from typing import List, Optional

import pandas as pd

from algoperf import experiment, logger_utils, search_space, submission_loader
from algoperf.suite.plan import SEARCH_SPACE_FILE, search_space_for, submission_root

STEPS, MORE_STEPS = 3, 2


@dataclasses.dataclass
class CheckResult:
    workload: str
    ok: bool
    message: str
    seconds: float


def default_search_space(submission_path: str) -> Optional[str]:
    """The ``tuning_search_space.json`` of the submission's folder, if it ships one."""
    path = os.path.join(submission_root(submission_path), SEARCH_SPACE_FILE)
    return path if os.path.isfile(path) else None


def check_workload(submission_path: str, workload: str, space: Optional[str],
                   framework: str = "pytorch", data_dir: Optional[str] = None,
                   steps: int = STEPS, more_steps: int = MORE_STEPS) -> CheckResult:
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="algoperf_check_") as scratch:
        config = experiment.ExperimentConfig(
            workload=workload, submission_path=submission_path, experiment_dir=scratch,
            experiment_name="check", framework=framework,
            tuning_ruleset="external" if space else "self",
            tuning_search_space=search_space_for(space, workload), rng_seed=0,
            data_dir=data_dir, max_global_steps=steps)
        try:
            message = _run_and_resume(config, steps, more_steps)
            ok = message.startswith("ok")
        except (submission_loader.SubmissionError, search_space.SearchSpaceError,
                experiment.ExperimentError, FileNotFoundError, ValueError) as error:
            ok, message = False, f"FAILED: {error}"
        except Exception as error:  # noqa: BLE001 - one line per workload, whatever broke
            folder = os.path.dirname(os.path.abspath(submission_path))
            ok, message = False, f"FAILED: {submission_loader.describe_failure(error, folder)}"
    return CheckResult(workload, ok, message, time.time() - start)


def _run_and_resume(config: experiment.ExperimentConfig, steps: int, more: int) -> str:
    (first,) = experiment.run_experiment(config)
    if first.failed:
        return f"FAILED: {first.reason}"
    resumed = dataclasses.replace(config, resume_last_run=True, rng_seed=None,
                                  max_global_steps=steps + more)
    (second,) = experiment.run_experiment(resumed)
    if second.failed:
        return f"FAILED after resuming from its checkpoint: {second.reason}"
    trial_dir = os.path.join(experiment.workload_dir(config, 0), "trial_1")
    problem = _log_problem(trial_dir, steps + more)
    if problem:
        return f"FAILED: {problem}"
    left_out = first.checkpoint_left_out + [
        p for p in second.checkpoint_left_out if p not in first.checkpoint_left_out]
    note = "; the checkpoint leaves out " + "; ".join(left_out) if left_out else ""
    evals = len(pd.read_csv(os.path.join(trial_dir, logger_utils.EVAL_FILE)))
    return f"ok ({steps} steps, checkpoint, resume, {more} more; {evals} evals){note}"


def _log_problem(trial_dir: str, last_step: int) -> Optional[str]:
    """What is wrong with the logs of a run that stopped and resumed (None: nothing)."""
    path = os.path.join(trial_dir, logger_utils.EVAL_FILE)
    if not os.path.exists(path):
        return f"no {logger_utils.EVAL_FILE} was written"
    evals = pd.read_csv(path)
    steps = evals["global_step"]
    if not (steps.is_unique and steps.is_monotonic_increasing):
        return f"{logger_utils.EVAL_FILE} logs steps {steps.tolist()} (each once, increasing)"
    if steps.iloc[-1] != last_step:
        return f"the resumed run ended at step {steps.iloc[-1]}, expected {last_step}"
    if set(evals["preemption_count"]) != {0, 1}:
        return "the resumed run's evals do not carry preemption_count 1"
    return None


def check(submission_path: str, workloads: List[str], space: Optional[str],
          framework: str = "pytorch", data_dir: Optional[str] = None,
          on_result=None) -> List[CheckResult]:
    results = []
    for workload in workloads:
        result = check_workload(submission_path, workload, space, framework, data_dir)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
