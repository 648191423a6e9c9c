"""``benchmarks.kfac_protocol``'s reading of a suite: best trial per study, median over
studies with misses as inf, ratios against NAdamW, the paper's 0.75 line."""
import math

import pandas as pd

from benchmarks import kfac_protocol

NAN, INF = math.nan, math.inf


def rows(submission, studies):
    """studies: per study, per trial (steps, seconds); NaN steps / inf seconds = missed."""
    return [{"submission": submission, "workload": "w", "study": f"study_{j}",
             "trial": f"trial_{k + 1}", "status": "ok", "step_at_target": steps,
             "time_to_target": seconds, "final_step": 300}
            for j, trials in enumerate(studies) for k, (steps, seconds) in enumerate(trials)]


def test_best_of_trials_then_median_of_studies():
    table = pd.DataFrame(
        rows("nadamw", [[(120, 30.0), (100, 31.0), (NAN, INF)], [(90, 20.0), (NAN, INF)],
                        [(NAN, INF), (NAN, INF)]])
        + rows("kfac_reduce", [[(60, 40.0), (80, 35.0)], [(70, 30.0)], [(75, 33.0)]])
        + rows("kfac_expand", [[(NAN, INF)], [(NAN, INF)], [(80, 25.0)]]))
    # Another workload's trial in the same table must not count for "w".
    table.loc[len(table)] = dict(table.iloc[0], workload="other", step_at_target=1)
    out = kfac_protocol.summarise(table, "w")
    # nadamw: best per study 100, 90, miss -> median 100; best times 30, 20, inf -> 30.
    assert out["median_steps"]["nadamw"] == 100 and out["median_time_s"]["nadamw"] == 30.0
    assert out["per_study"]["nadamw"]["study_0"] == {
        "best_steps": 100, "best_trial_by_steps": "trial_2", "best_time_s": 30.0,
        "trials_reached": 2, "trials": 3}
    assert out["per_study"]["nadamw"]["study_2"]["best_steps"] is None
    # reduce: 60, 70, 75 -> 70 steps (0.7 of NAdamW); times 35, 30, 33 -> 33 s (1.1).
    assert out["median_steps"]["kfac_reduce"] == 70
    assert out["steps_ratio_over_nadamw"]["kfac_reduce"] == 0.7
    assert out["time_ratio_over_nadamw"]["kfac_reduce"] == 1.1
    assert out["within_paper_claim"]["kfac_reduce"] is True
    # expand missed two studies of three: its median is a miss, no ratio, not within.
    assert out["median_steps"]["kfac_expand"] is None
    assert out["steps_ratio_over_nadamw"]["kfac_expand"] is None
    assert out["within_paper_claim"]["kfac_expand"] is False
    assert out["studies"] == 3 and out["trials_per_study"] == 3
