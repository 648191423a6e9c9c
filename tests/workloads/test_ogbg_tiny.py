"""ogbg_tiny end to end: the NAdamW baseline reaches the tiny tier's targets on CPU."""
import json
import os
import time

import pandas as pd
import pytest

from algoperf import experiment
from tests.conftest import REPO
from workloads.ogbg.definition import OgbgTinyDefinition

HERE = os.path.join(REPO, "workloads", "ogbg")


@pytest.mark.slow
def test_nadamw_reaches_the_ogbg_tiny_targets(tmp_path, tiny_data_dir):
    with open(os.path.join(HERE, "tiny_targets.json")) as f:
        point = json.load(f)["point"]  # the point the targets were set with
    space = tmp_path / "point.json"
    space.write_text(json.dumps([point]))  # a fixed point: one trial, no draw
    cfg = experiment.ExperimentConfig(
        workload="ogbg_tiny",
        submission_path=os.path.join(REPO, "submissions/nadamw/submission.py"),
        tuning_search_space=str(space), experiment_dir=str(tmp_path),
        experiment_name="tiny", rng_seed=0, data_dir=tiny_data_dir)
    start = time.monotonic()
    [result] = experiment.run_experiment(cfg)
    wall = time.monotonic() - start
    assert not result.failed, result.reason
    assert result.reached_validation and result.reached_test
    evals = pd.read_csv(tmp_path / "tiny" / "ogbg_tiny_pytorch" / "trial_1" /
                        "eval_measurements.csv")
    last = evals.iloc[-1]
    metric = "mean_average_precision"
    assert last[f"validation/{metric}"] >= OgbgTinyDefinition.validation_target_value
    assert last[f"test/{metric}"] >= OgbgTinyDefinition.test_target_value
    assert last["validation/num_examples"] == 1024
    assert last["score"] < OgbgTinyDefinition.max_allowed_runtime_sec
    # Training itself is ~60-90 s (the score); data generation, start-up and evals add
    # ~30 s, more on a busy machine. A guard against a hang, not a speed test.
    assert wall < 2 * OgbgTinyDefinition.max_allowed_runtime_sec, f"took {wall:.0f} s"
