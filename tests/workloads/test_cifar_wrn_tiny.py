"""cifar_wrn_tiny end to end: the NAdamW baseline reaches the tiny tier's targets on CPU."""
import json
import os
import time

import pandas as pd
import pytest

from algoperf import experiment
from tests.conftest import REPO
from workloads.target_setting import TINY_POINT
from workloads.cifar_wrn.definition import CifarWrnTinyDefinition


@pytest.mark.slow
def test_nadamw_reaches_the_cifar_wrn_tiny_targets(tmp_path, tiny_data_dir):
    space = tmp_path / "point.json"
    space.write_text(json.dumps([TINY_POINT]))  # a fixed point: one trial, no draw
    cfg = experiment.ExperimentConfig(
        workload="cifar_wrn_tiny",
        submission_path=os.path.join(REPO, "submissions/nadamw/submission.py"),
        tuning_search_space=str(space), experiment_dir=str(tmp_path),
        experiment_name="tiny", rng_seed=0, data_dir=tiny_data_dir)
    start = time.monotonic()
    [result] = experiment.run_experiment(cfg)
    wall = time.monotonic() - start
    assert not result.failed, result.reason
    assert result.reached_validation and result.reached_test
    evals = pd.read_csv(tmp_path / "tiny" / "cifar_wrn_tiny_pytorch" / "trial_1" /
                        "eval_measurements.csv")
    last = evals.iloc[-1]
    assert last["validation/accuracy"] >= CifarWrnTinyDefinition.validation_target_value
    assert last["test/accuracy"] >= CifarWrnTinyDefinition.test_target_value
    assert last["validation/num_examples"] == 1000
    assert last["score"] < CifarWrnTinyDefinition.max_allowed_runtime_sec
    assert wall < 120, f"took {wall:.0f} s"
