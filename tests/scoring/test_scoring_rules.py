"""Each scoring rule on hand-computed cases (no files involved)."""
import numpy as np
import pandas as pd
import pytest

from scoring import rules
from scoring.targets import targets_from_dict

INF = np.inf
TARGETS = targets_from_dict({
    "base_workloads": ["acc", "lossy"], "held_out_workloads": ["acc_variant"],
    "workloads": {
        "acc": {"target_metric_name": "accuracy", "validation_target_value": 0.8},
        "lossy": {"target_metric_name": "loss", "validation_target_value": 0.5},
        "acc_variant": {"target_metric_name": "accuracy", "validation_target_value": 0.7},
    }}, "test")


def make_trials(specs):
    """specs: [(study, workload, trial, status, [(time, value), ...])] -> (evals, trials)."""
    trial_rows, eval_rows = [], []
    for trial_id, (study, workload, trial, status, evals) in enumerate(specs):
        trial_rows.append({"trial_id": trial_id, "submission": "sub", "study": study,
                           "workload": workload, "framework": "pytorch", "trial": trial,
                           "path": f"/logs/{study}/{workload}/trial_{trial}", "status": status,
                           "reason": "", "n_evals": len(evals), "hparams": ""})
        for i, (time, value) in enumerate(evals):
            eval_rows.append({"trial_id": trial_id, "eval_index": i, "time": float(time),
                              "global_step": 10.0 * (i + 1), "value": value})
    evals = pd.DataFrame(eval_rows, columns=["trial_id", "eval_index", "time", "global_step",
                                             "value"])
    return evals, pd.DataFrame(trial_rows)


def trial_results(specs):
    evals, trials = make_trials(specs)
    return rules.trial_results(evals, trials, TARGETS)


# ----------------------------------------------------------------------------- rule 1: trial

def test_reached_is_non_strict_and_nan_never_counts():
    values = np.array([0.79, 0.8, 0.81, np.nan])
    assert rules.reached(values, np.full(4, 0.8)).tolist() == [False, True, True, False]


def test_trial_time_is_the_first_eval_that_reaches_the_target():
    out = trial_results([("s0", "acc", 1, "ok", [(10, .5), (20, .8), (30, .9)])])
    row = out.iloc[0]
    assert row["reached"] and row["eval_index_at_target"] == 1
    assert row["time_to_target"] == 20 and row["step_at_target"] == 20
    assert row["best_value"] == .9 and row["time_to_best"] == 30


def test_lower_is_better_metric_reaches_at_or_below_target():
    out = trial_results([("s0", "lossy", 1, "ok", [(10, .9), (20, .5), (30, .4)]),
                         ("s0", "lossy", 2, "ok", [(10, .51)])])
    assert out["time_to_target"].tolist() == [20, INF]
    assert out["best_value"].tolist() == [.4, .51]  # best = lowest loss


def test_nan_evals_are_skipped_not_counted():
    out = trial_results([("s0", "acc", 1, "ok", [(10, np.nan), (20, .85)]),
                         ("s0", "acc", 2, "ok", [(10, np.nan), (20, np.nan)])])
    assert out["eval_index_at_target"].tolist() == [1, -1]
    assert out["time_to_target"].tolist() == [20, INF]
    assert np.isnan(out["best_value"].iloc[1])


def test_failed_trial_never_counts_even_if_its_log_reached_the_target():
    out = trial_results([("s0", "acc", 1, "failed", [(5, .95)])])
    assert not out["reached"].iloc[0] and out["time_to_target"].iloc[0] == INF
    assert out["best_value"].iloc[0] == .95  # still summarised


def test_trial_without_evals_is_a_miss():
    out = trial_results([("s0", "acc", 1, "no_evals", [])])
    assert not out["reached"].iloc[0] and out["time_to_target"].iloc[0] == INF


# ----------------------------------------------------------------------------- rule 2: study

def test_study_keeps_the_trial_with_the_earliest_eval_index_not_the_smallest_time():
    # trial 1 reaches at eval 2 after 50 s; trial 2 at eval 1 after 100 s (slower clock).
    out = rules.study_times(trial_results([
        ("s0", "acc", 1, "ok", [(10, .1), (20, .2), (50, .9)]),
        ("s0", "acc", 2, "ok", [(60, .1), (100, .9)])]))
    assert out["trial"].tolist() == [2] and out["time"].tolist() == [100]


def test_study_tie_on_eval_index_goes_to_the_smaller_time():
    out = rules.study_times(trial_results([
        ("s0", "acc", 1, "ok", [(10, .1), (40, .9)]),
        ("s0", "acc", 2, "ok", [(10, .1), (30, .9)]),
        ("s0", "acc", 3, "ok", [(10, .1), (35, .9)])]))
    assert out["trial"].tolist() == [2] and out["time"].tolist() == [30]


def test_study_where_no_trial_reached_is_infinite():
    out = rules.study_times(trial_results([("s0", "acc", 1, "ok", [(10, .1)]),
                                           ("s0", "acc", 2, "failed", [])]))
    assert out["time"].tolist() == [INF] and out["trial"].tolist() == [-1]
    assert out["n_trials"].tolist() == [2] and out["n_reached"].tolist() == [0]


# ----------------------------------------------------------------------------- rule 3: workload

def studies_frame(times_by_study, workload="acc", submission="sub"):
    return pd.DataFrame({"submission": submission, "workload": workload,
                         "study": [f"study_{i}" for i in range(len(times_by_study))],
                         "time": times_by_study})


@pytest.mark.parametrize("times, expected", [
    ([30.0], 30.0),                       # one study
    ([10.0, 20.0], 15.0),                 # even count: mean of the middle two
    ([10.0, INF], INF),                   # ... and a miss among two makes it infinite
    ([10.0, 20.0, INF], 20.0),            # misses count as infinite, the median survives
    ([10.0, INF, INF], INF),              # majority missed
    ([INF] * 5, INF),                     # all missed
    ([50.0, 10.0, 40.0, 20.0, 30.0], 30.0),
])
def test_workload_time_is_the_median_over_studies_with_misses_as_infinity(times, expected):
    table = rules.workload_times(studies_frame(times), ["sub"], ["acc"])
    assert table.at["sub", "acc"] == expected


def test_workload_never_run_is_infinite():
    table = rules.workload_times(studies_frame([10.0]), ["sub", "other"], ["acc", "lossy"])
    assert table.at["sub", "lossy"] == INF and table.at["other", "acc"] == INF


# ----------------------------------------------------------------------------- rule 4: held-out

COLUMNS = ["base", "variant"]
PAIRS = {"variant": "base"}


def held_out(rows):
    return rules.apply_held_out_rules(np.array(rows, float), COLUMNS, PAIRS, 4.0)


def test_variant_is_voided_when_its_base_missed():
    out = held_out([[INF, 10.0], [20.0, 30.0]])
    assert out[0].tolist() == [INF, INF] and out[1].tolist() == [20.0, 30.0]


def test_times_beyond_four_times_the_best_are_voided_but_exactly_four_is_kept():
    out = held_out([[10.0, 10.0], [40.0, 40.0], [40.1, 10.0]])
    assert out[:, 0].tolist() == [10.0, 40.0, INF]


def test_base_is_voided_when_its_variant_missed():
    out = held_out([[10.0, INF], [20.0, 30.0]])
    assert out[0].tolist() == [INF, INF] and out[1].tolist() == [20.0, 30.0]


def test_order_base_to_variant_filter_runs_before_the_4x_rule():
    # X's variant is the fastest but X missed the base: step (a) voids it *before* the best
    # variant time is taken, so Y's variant (50) is within 4x of the best (50), and Y keeps
    # its base. Running the 4x rule first would compare 50 with 10 and void Y entirely.
    out = held_out([[INF, 10.0], [20.0, 50.0]])
    assert out[1].tolist() == [20.0, 50.0]


def test_order_variant_to_base_filter_runs_after_the_4x_rule():
    # Y's variant (50) is more than 4x Z's (10): the 4x rule voids it, and step (c) then voids
    # Y's base. Running (c) before the 4x rule would leave Y's base at 20.
    out = held_out([[20.0, 50.0], [30.0, 10.0]])
    assert out[0].tolist() == [INF, INF] and out[1].tolist() == [30.0, 10.0]


def test_held_out_rules_work_on_a_batch_of_tables():
    batch = np.array([[[INF, 10.0], [20.0, 50.0]], [[20.0, 50.0], [30.0, 10.0]]])
    out = rules.apply_held_out_rules(batch, COLUMNS, PAIRS)
    assert out[0].tolist() == held_out(batch[0]).tolist()
    assert out[1].tolist() == held_out(batch[1]).tolist()


def test_scored_times_keeps_base_columns_and_applies_rules_only_when_asked():
    raw = pd.DataFrame([[10.0, INF], [20.0, 30.0]], index=["x", "y"], columns=COLUMNS)
    with_rules = rules.scored_times(raw, ["base"], PAIRS, held_out=True)
    without = rules.scored_times(raw, ["base"], PAIRS, held_out=False)
    assert list(with_rules.columns) == ["base"]
    assert with_rules["base"].tolist() == [INF, 20.0]
    assert without["base"].tolist() == [10.0, 20.0]


def test_held_out_pairs_match_each_variant_to_its_longest_base_prefix():
    table = targets_from_dict({"workloads": {
        name: {"target_metric_name": "accuracy", "validation_target_value": 0.5}
        for name in ["imagenet", "imagenet_vit", "imagenet_vit_glu", "imagenet_resnet_silu"]}},
        "test")
    pairs = rules.held_out_pairs(table, ["imagenet", "imagenet_vit"],
                                 ["imagenet_vit_glu", "imagenet_resnet_silu"])
    assert pairs == {"imagenet_vit_glu": "imagenet_vit", "imagenet_resnet_silu": "imagenet"}
