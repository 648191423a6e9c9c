"""``algoperf suite`` end to end: real trials in parallel worker processes, then scores."""
import json
import os

import pandas as pd
import pytest

from tests.conftest import REPO, run_cli

FIXTURES = os.path.join(REPO, "tests", "suite", "fixtures")


def suite(tmp_path, data_dir, *extra):
    return run_cli("suite", f"--output_dir={tmp_path}", f"--submissions_dir={FIXTURES}",
                   "--submissions=quick,broken", "--workloads=mnist_tiny", "--num_workers=2",
                   "--max_global_steps=5", f"--data_dir={data_dir}", *extra)


@pytest.mark.slow
def test_suite_runs_in_parallel_isolates_failures_scores_and_resumes(tmp_path, tiny_data_dir):
    out = suite(tmp_path, tiny_data_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = tmp_path / "external_tuning"
    quick = runs / "quick" / "study_0" / "mnist_tiny_pytorch" / "trial_1"
    broken = runs / "broken" / "study_0" / "mnist_tiny_pytorch" / "trial_1"
    # AlgoPerf's layout; the good trial trained to the step limit, the broken one is recorded.
    evals = pd.read_csv(quick / "eval_measurements.csv")
    assert evals["global_step"].iloc[-1] == 5
    assert json.loads((broken / "failed.json").read_text())["reason"] == (
        "RuntimeError: broken on purpose")
    assert not (broken / "suite_done.json").exists()
    # Both trials ran at the same time, in separate processes: each started (meta_data_0.json
    # is written at a trial's start) before either finished.
    assert "2 to run on local with 2 workers" in out.stdout
    started = max(os.path.getmtime(d / "meta_data_0.json") for d in (quick, broken))
    finished = min(json.loads((quick / "suite_done.json").read_text())["finished_at"],
                   os.path.getmtime(broken / "failed.json"))
    assert started < finished
    # Progress, failure report, the score table, report and plot.
    assert "2/2 finished (1 done, 1 failed)" in out.stdout
    assert "FAILED broken/mnist_tiny/study_0/trial_1: RuntimeError: broken on purpose" in \
        out.stdout
    assert "rank  submission" in out.stdout
    scores = pd.read_csv(tmp_path / "scores" / "scores.csv")
    assert sorted(scores["submission"]) == ["broken", "quick"]
    png = (tmp_path / "scores" / "performance_profile.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    csv_before = (quick / "eval_measurements.csv").read_text()

    # Re-run: nothing redone, the same scores.
    again = suite(tmp_path, tiny_data_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 already done, 1 already failed (not retried), 0 to run" in again.stdout
    assert pd.read_csv(tmp_path / "scores" / "scores.csv").equals(scores)
    assert not (quick / "flags_1.json").exists()

    # An interrupted trial (folder without the done marker) is resumed from its checkpoint:
    # a second start is logged, the evals are not redone, the scores stay the same.
    os.remove(quick / "suite_done.json")
    resumed = suite(tmp_path, tiny_data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "1 already done" not in resumed.stdout and "1 to run" in resumed.stdout
    assert (quick / "flags_1.json").exists() and (quick / "suite_done.json").exists()
    assert (quick / "eval_measurements.csv").read_text() == csv_before
    assert not (broken / "flags_1.json").exists()
    assert pd.read_csv(tmp_path / "scores" / "scores.csv").equals(scores)
