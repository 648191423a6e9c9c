"""The tiny tier's end-to-end check, shared by every ``_tiny`` workload's slow test: the
NAdamW baseline, at the point the workload's targets were set with, reaches both targets
through the real experiment path within the budget."""
import json
import os
import time

import pandas as pd

from algoperf import experiment
from tests.conftest import REPO
from workloads import registry


def nadamw_reaches_the_targets(tmp_path, workload_name: str, data_dir: str,
                               targets_json: str) -> pd.Series:
    """Runs one trial and returns its last eval row (after the common assertions)."""
    definition = registry.get_definition(workload_name)
    with open(os.path.join(REPO, targets_json)) as f:
        point = json.load(f)["point"]  # the point the targets were set with
    space = tmp_path / "point.json"
    space.write_text(json.dumps([point]))  # a fixed point: one trial, no draw
    cfg = experiment.ExperimentConfig(
        workload=workload_name,
        submission_path=os.path.join(REPO, "submissions/nadamw/submission.py"),
        tuning_search_space=str(space), experiment_dir=str(tmp_path),
        experiment_name="tiny", rng_seed=0, data_dir=data_dir)
    start = time.monotonic()
    [result] = experiment.run_experiment(cfg)
    wall = time.monotonic() - start
    assert not result.failed, result.reason
    assert result.reached_validation and result.reached_test
    evals = pd.read_csv(tmp_path / "tiny" / f"{workload_name}_pytorch" / "trial_1" /
                        "eval_measurements.csv")
    last = evals.iloc[-1]
    metric = definition.target_metric_name
    # Each target counts once reached (as in AlgoPerf), so the run stops at the eval that
    # reaches the second one; the first may have dipped below its target by then.
    validation = evals[f"validation/{metric}"] >= definition.validation_target_value
    test = evals[f"test/{metric}"] >= definition.test_target_value
    assert validation.any() and test.any()
    assert len(evals) - 1 == max(validation.argmax(), test.argmax())
    assert last["validation/num_examples"] == definition.num_validation_examples
    assert last["score"] < definition.max_allowed_runtime_sec
    # Data generation, start-up and evals come on top of the score; a guard against a hang,
    # not a speed test.
    assert wall < 2 * definition.max_allowed_runtime_sec, f"took {wall:.0f} s"
    return last
