"""``algoperf suite`` end to end: real trials in parallel worker processes, then scores."""
import importlib.util
import json
import os

import pandas as pd
import pytest

from tests.conftest import REPO, run_cli

FIXTURES = os.path.join(REPO, "tests", "suite", "fixtures")
# The failure reason names the submission's own line, not the harness frame that called it.
BROKEN_REASON = ("RuntimeError: broken on purpose (at tests/suite/fixtures/broken/submission.py:7"
                 " in update_params: raise RuntimeError(\"broken on purpose\"))")


def suite(tmp_path, data_dir, *extra, env=None):
    return run_cli("suite", f"--output_dir={tmp_path}", f"--submissions_dir={FIXTURES}",
                   "--submissions=quick,broken", "--workloads=mnist_tiny", "--num_workers=2",
                   "--max_global_steps=5", f"--data_dir={data_dir}", *extra, env=env)


@pytest.mark.slow
def test_suite_runs_in_parallel_isolates_failures_scores_and_resumes(tmp_path, tiny_data_dir):
    wandb_env = None
    if importlib.util.find_spec("wandb") is not None:  # also checks --wandb, offline
        wandb_env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wb"),
                     "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"}
        os.makedirs(wandb_env["WANDB_DIR"])
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    out = suite(tmp_path, tiny_data_dir, *(["--wandb", "--wandb_project=suite_test"]
                                           if wandb_env else []),
                *(["--tensorboard"] if tensorboard else []), env=wandb_env)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = tmp_path / "external_tuning"
    quick = runs / "quick" / "study_0" / "mnist_tiny_pytorch" / "trial_1"
    broken = runs / "broken" / "study_0" / "mnist_tiny_pytorch" / "trial_1"
    # AlgoPerf's layout; the good trial trained to the step limit, the broken one is recorded.
    evals = pd.read_csv(quick / "eval_measurements.csv")
    assert evals["global_step"].iloc[-1] == 5
    # The reason names the submission's own line, not the harness frame that called it.
    assert json.loads((broken / "failed.json").read_text())["reason"] == BROKEN_REASON
    assert not (broken / "suite_done.json").exists()
    # Both trials ran at the same time, in separate processes: each started (meta_data_0.json
    # is written at a trial's start) before either finished.
    assert "2 to run on local with 2 workers" in out.stdout
    started = max(os.path.getmtime(d / "meta_data_0.json") for d in (quick, broken))
    finished = min(json.loads((quick / "suite_done.json").read_text())["finished_at"],
                   os.path.getmtime(broken / "failed.json"))
    assert started < finished
    # Each worker's trials are pinned to its own cores (two workers: one share each).
    if len(os.sched_getaffinity(0)) >= 2:
        cores = [json.loads((d / "meta_data_0.json").read_text())["cpu_affinity"]
                 for d in (quick, broken)]
        assert all(cores) and not set(cores[0]) & set(cores[1]), cores
        assert "pinned to cores" in (quick / "suite_output.log").read_text()
        assert "pinned to 1 core(s) each" in out.stdout or "core(s) each" in out.stdout
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
    if tensorboard:  # the flag reached the trial processes (rows checked in test_tensorboard)
        assert list((quick / "tensorboard").glob("events.out.tfevents.*"))
    if wandb_env:
        check_wandb(wandb_env["WANDB_DIR"], evals)

    # Re-run: nothing redone, the same scores.
    again = suite(tmp_path, tiny_data_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 already done, 1 already failed (not retried), 0 to run" in again.stdout
    assert pd.read_csv(tmp_path / "scores" / "scores.csv").equals(scores)
    assert not (quick / "flags_1.json").exists()

    # An interrupted trial (killed before its loop ended: no completion marker of the run
    # and none of the suite) is resumed from its checkpoint: a second start is logged, the
    # evals are not redone, the scores stay the same.
    os.remove(quick / "suite_done.json")
    os.remove(quick / "complete.json")
    resumed = suite(tmp_path, tiny_data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "1 already done" not in resumed.stdout and "1 to run" in resumed.stdout
    assert (quick / "flags_1.json").exists() and (quick / "suite_done.json").exists()
    assert (quick / "eval_measurements.csv").read_text() == csv_before
    assert not (broken / "flags_1.json").exists()
    assert pd.read_csv(tmp_path / "scores" / "scores.csv").equals(scores)


def check_wandb(wandb_dir, evals):
    """One W&B run per trial with every eval row; the scores pushed as a table and image."""
    from tests.suite.test_suite_tracking import finished_runs
    runs = {r["run"]["name"]: r for r in finished_runs(wandb_dir, 3)}
    assert set(runs) == {"quick/study_0/mnist_tiny/trial_1", "broken/study_0/mnist_tiny/trial_1",
                         "scores"}
    trial = runs["quick/study_0/mnist_tiny/trial_1"]
    assert trial["run"]["group"] == "quick/study_0" and trial["run"]["project"] == "suite_test"
    logged = pd.DataFrame(trial["history"])
    assert logged["global_step"].tolist() == evals["global_step"].tolist()
    assert logged["validation/accuracy"].tolist() == pytest.approx(
        evals["validation/accuracy"].tolist())
    assert trial["config"]["hyperparameters"]["learning_rate"] > 0
    assert "git_hash" in trial["config"]["metadata"]
    broken = runs["broken/study_0/mnist_tiny/trial_1"]
    assert broken["summary"]["failed"] is True
    assert broken["summary"]["reason"] == BROKEN_REASON
    (pushed,) = runs["scores"]["history"]
    assert pushed["scores/_type"] == "table-file" and pushed["scores/nrows"] == 2
    assert pushed["performance_profile/_type"] == "image-file"
    assert {"score/quick", "score/broken"} <= set(runs["scores"]["summary"])
