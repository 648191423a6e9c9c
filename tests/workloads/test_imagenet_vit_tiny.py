"""imagenet_vit_tiny end to end: the NAdamW baseline reaches the tiny tier's targets on CPU."""
import json
import os
import time

import pandas as pd
import pytest

from algoperf import experiment
from tests.conftest import REPO
from workloads.imagenet_vit.definition import ImagenetVitTinyDefinition

POINT = os.path.join(REPO, "workloads", "imagenet_vit", "tiny_point.json")


@pytest.mark.slow
def test_nadamw_reaches_the_imagenet_vit_tiny_targets(tmp_path, tiny_data_dir):
    space = tmp_path / "point.json"
    with open(POINT) as f:
        space.write_text(json.dumps([json.load(f)]))  # a fixed point: one trial, no draw
    cfg = experiment.ExperimentConfig(
        workload="imagenet_vit_tiny",
        submission_path=os.path.join(REPO, "submissions/nadamw/submission.py"),
        tuning_search_space=str(space), experiment_dir=str(tmp_path),
        experiment_name="tiny", rng_seed=0, data_dir=tiny_data_dir)
    start = time.monotonic()
    [result] = experiment.run_experiment(cfg)
    wall = time.monotonic() - start
    assert not result.failed, result.reason
    assert result.reached_validation and result.reached_test
    evals = pd.read_csv(tmp_path / "tiny" / "imagenet_vit_tiny_pytorch" / "trial_1" /
                        "eval_measurements.csv")
    last = evals.iloc[-1]
    assert last["validation/accuracy"] >= ImagenetVitTinyDefinition.validation_target_value
    assert last["test/accuracy"] >= ImagenetVitTinyDefinition.test_target_value
    assert last["validation/num_examples"] == 2048
    assert last["score"] < ImagenetVitTinyDefinition.max_allowed_runtime_sec
    # Batch 1024 (the imagenet_vit baseline size): ~0.6 s a step on two idle cores.
    assert wall < 300, f"took {wall:.0f} s"
