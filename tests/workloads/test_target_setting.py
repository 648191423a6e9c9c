"""AlgoPerf's target-setting rule (workloads.target_setting) on hand-made trajectories."""
import json
import os

import pytest

from algoperf.suite import plan
from tests.conftest import REPO
from workloads import registry
from workloads.target_setting import calibrate_eval_period, summarise


def run(seed, *evals):
    return {"seed": seed, "evals": [{"step": i, "time_s": i, "validation": v, "test": t}
                                    for i, (v, t) in enumerate(evals)]}


ACCURACY_RUNS = [run(0, (0.5, 0.5), (0.966, 0.95)), run(1, (0.95, 0.93), (0.964, 0.97)),
                 run(2, (0.7, 0.6), (0.965, 0.96))]


def test_median_best_validation_and_worst_test_at_the_first_hit():
    exact = summarise(ACCURACY_RUNS, margin=0.0, decimals=4)
    assert exact["validation_target"] == 0.965
    assert exact["test_target"] == 0.95  # seed 1 (best 0.964) never reaches 0.965
    assert [r["validation_hit"] is not None for r in exact["runs"]] == [True, False, True]


def test_tiny_margin_moves_the_target_to_the_easy_side():
    # 0.965 - 0.02 -> 0.94 (rounded down); seed 1 now hits at its first eval, test 0.93, and
    # the test target moves by the same margin: 0.93 - 0.02.
    tiny = summarise(ACCURACY_RUNS, margin=0.02, decimals=2)
    assert tiny["validation_target"] == 0.94 and tiny["test_target"] == 0.91


def test_lower_is_better_metric_flips_every_comparison():
    # An error rate: best = min, test target = the *largest* error at the first hit.
    runs = [run(0, (0.4, 0.45), (0.10, 0.12)), run(1, (0.3, 0.31), (0.12, 0.14)),
            run(2, (0.2, 0.25), (0.11, 0.13))]
    exact = summarise(runs, margin=0.0, decimals=4, lower_better=True)
    assert exact["validation_target"] == 0.11
    assert exact["test_target"] == 0.13  # seed 1 never gets to 0.11; seeds 0, 2: 0.12, 0.13
    eased = summarise(runs, margin=0.005, decimals=2, lower_better=True)
    assert eased["validation_target"] == 0.12  # 0.115 rounded *up*
    assert eased["test_target"] == 0.145  # now seed 1 hits too, at test 0.14; + 0.005


def test_fixed_validation_target_only_derives_the_test_target():
    fixed = summarise(ACCURACY_RUNS, margin=0.02, decimals=2, validation_target=0.9)
    assert fixed["validation_target"] == 0.9
    assert fixed["test_target"] == 0.93  # first hits: 0.95 (seed 0), 0.93, 0.96


def test_no_run_reaching_the_target_is_an_error():
    with pytest.raises(ValueError, match="no run reached"):
        summarise(ACCURACY_RUNS, margin=0.0, decimals=2, validation_target=0.99)


def test_calibrated_eval_period_is_5_percent_of_the_median_rounded_down():
    runs = [{"rng_seed": s, "step": 1, "step_to_target": k, "time_to_target_s": t}
            for s, (k, t) in enumerate([(118, 23.609), (139, 30.075), (99, 20.313)])]
    calibration = calibrate_eval_period("w", runs)
    assert calibration["median_time_to_target_s"] == 23.609
    assert calibration["eval_period_s"] == 1.1  # 0.05 x 23.609 = 1.18 -> 1.1
    assert calibration["median_steps_to_target"] == 118
    assert calibration["eval_period_steps"] == 5  # 0.05 x 118 = 5.9 -> 5
    assert calibrate_eval_period("w", runs[:1])["eval_period_s"] == 1.1
    few = [dict(r, step_to_target=12) for r in runs]
    assert calibrate_eval_period("w", few)["eval_period_steps"] == 1  # never 0
    missed = [dict(r, time_to_target_s=None) for r in runs[:2]] + runs[2:]
    with pytest.raises(ValueError, match="only 1 of 3 runs reached"):
        calibrate_eval_period("w", missed)


@pytest.mark.parametrize("name", plan.tiny_workloads())
def test_every_tiny_eval_period_resolves_nadamws_time_to_target_to_5_percent(name):
    definition = registry.get_definition(name)
    family = definition.base_workload_name
    with open(os.path.join(REPO, "workloads", family, "tiny_targets.json")) as f:
        calibration = json.load(f)["eval_period_calibration"]
    assert calibration["clock"] == definition.clock
    assert len(calibration["runs"]) >= 3
    assert all(r["time_to_target_s"] is not None for r in calibration["runs"])
    assert definition.eval_period_time_sec <= 0.05 * calibration["median_time_to_target_s"]
    assert definition.eval_period_time_sec == calibration["eval_period_s"]
    # The tier's evals come on a step grid, calibrated the same way.
    assert all(r["step_to_target"] is not None for r in calibration["runs"])
    assert definition.eval_period_steps <= 0.05 * calibration["median_steps_to_target"]
    assert definition.eval_period_steps == calibration["eval_period_steps"]
