"""Same seed, same losses on every tiny workload as when ``regression_losses.json`` was recorded
(before the workloads moved behind the framework seam): a refactoring that changes any number
a trial computes fails here."""
import json
import os

import pytest

from tests.workloads.regression_reference import WORKLOADS, trajectory

REFERENCE = os.path.join(os.path.dirname(__file__), "regression_losses.json")
ONE_EXAMPLE = 1.001e-3


@pytest.fixture(scope="module")
def reference():
    with open(REFERENCE) as f:
        return json.load(f)


@pytest.mark.parametrize("name", WORKLOADS)
def test_same_seed_same_losses_as_recorded(name, reference, tiny_data_dir):
    got = trajectory(name, tiny_data_dir)
    want = reference[name]
    # 1e-5: the same code on another x86 CPU may round a few float32 sums differently.
    assert got["train_losses"] == pytest.approx(want["train_losses"], rel=1e-5, abs=1e-7)
    # The evals after step 1 and the last step are always there; steps between are evaluated
    # when they took longer than the eval period.
    assert set(want["evals"]) <= set(got["evals"])
    for step, metrics in want["evals"].items():
        for name, value in metrics.items():
            # A count metric moves in steps of one example: an argmax that another CPU's
            # float32 rounding flips is one example of the smallest split (1,000 examples).
            slack = ONE_EXAMPLE if name.endswith("accuracy") else 1e-7
            assert got["evals"][step][name] == pytest.approx(value, rel=1e-5, abs=slack), (
                step, name)
