"""W&B tracking in offline mode: what is written is read back from the run files and checked.

(The suite's --wandb end to end, trial runs and the pushed scores, is checked in
test_suite_e2e.py, on the same suite run as the rest.)
"""
import os
import time

import pytest

from algoperf import tracking
from algoperf.runner import TrialResult

wandb = pytest.importorskip("wandb", reason="wandb not installed (pip install -e '.[tracking]')")

@pytest.fixture
def offline(tmp_path, monkeypatch):
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wb"), "WANDB_SILENT": "true",
           "WANDB_DISABLE_GIT": "true", "WANDB_DISABLE_CODE": "true"}
    os.makedirs(env["WANDB_DIR"])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield env
    wandb.teardown()  # W&B keeps its settings (WANDB_DIR) per process until torn down


def finished_runs(wandb_dir, count, timeout=90.0):
    """The offline runs once ``count`` of them hold their exit record.

    W&B's service process writes the run file on its own schedule: the client's ``finish()``
    (or the client process's exit) can return before the last records are on disk.
    """
    deadline = time.time() + timeout
    while True:
        paths = tracking.offline_run_files(wandb_dir)
        kinds = [[r.WhichOneof("record_type") for r in tracking.offline_records(p)]
                 for p in paths]
        if len(paths) >= count and all("exit" in k for k in kinds):
            return [tracking.offline_run(p) for p in paths]
        assert time.time() < deadline, f"W&B runs under {wandb_dir} not finished: {kinds}"
        time.sleep(0.5)


def test_flags_are_passed_through_only_when_enabled():
    assert tracking.passthrough_flags({"wandb": False, "wandb_project": "p"}) == ()
    assert tracking.passthrough_flags({"wandb": True, "wandb_project": "p",
                                       "wandb_entity": None, "wandb_run_name": "r"}) == (
        "--wandb", "--wandb_project=p", "--wandb_run_name=r")
    assert tracking.passthrough_flags({"wandb": False, "wandb_project": "p",
                                       "tensorboard": True}) == ("--tensorboard",)


def test_trial_tracker_logs_every_eval_row_hyperparameters_and_outcome(offline):
    rows = [{"score": 0.5, "validation/accuracy": 0.25, "train/loss": 2.0},
            {"score": 1.5, "validation/accuracy": 0.75, "train/loss": 0.5}]
    tracker = tracking.TrialTracker(
        {"wandb": True, "wandb_project": "proj", "wandb_run_name": "exp"}, workload="mnist_tiny",
        submission="nadamw", experiment_name="nadamw/study_2", study=0, num_studies=1, trial=3,
        hyperparameters={"learning_rate": 0.01}, metadata={"rng_seed": 7})
    tracker.log_eval(1, rows[0])
    tracker.log_eval(9, rows[1])
    tracker.finish(TrialResult(trial_dir=None, global_step=9, accumulated_submission_time=1.5,
                               reached_validation=True, time_to_target=1.5))
    (run,) = finished_runs(offline["WANDB_DIR"], 1)
    assert run["run"] == {"name": "exp/nadamw/study_2/mnist_tiny/trial_3",
                          "group": "nadamw/study_2", "job_type": "mnist_tiny",
                          "project": "proj"}
    assert run["config"]["hyperparameters"] == {"learning_rate": 0.01}
    assert run["config"]["metadata"] == {"rng_seed": 7} and run["config"]["trial"] == 3
    history = [{k: v for k, v in h.items() if not k.startswith("_")} for h in run["history"]]
    assert history == [{**rows[0], "global_step": 1}, {**rows[1], "global_step": 9}]
    assert [h["_step"] for h in run["history"]] == [1, 9]
    assert run["summary"]["reached_validation_target"] is True
    assert run["summary"]["time_to_target"] == 1.5 and run["summary"]["failed"] is False


def test_a_resumed_trial_continues_the_same_wandb_run(offline, tmp_path):
    """The run id lives in the trial folder: a second start of the trial (--resume_last_run, a
    Slurm requeue) logs to the same run, and its rows carry on after the first start's."""
    trial_dir = tmp_path / "trial_1"
    common = dict(workload="mnist_tiny", submission="nadamw", experiment_name="e", study=0,
                  num_studies=1, trial=1, hyperparameters={}, metadata={},
                  trial_dir=str(trial_dir))
    first = tracking.TrialTracker({"wandb": True}, **common)
    first.log_eval(5, {"score": 0.1})
    first.run.finish(exit_code=1)  # killed before its finish()
    run_id = (trial_dir / tracking.RUN_ID_FILE).read_text().strip()
    second = tracking.TrialTracker({"wandb": True}, **common)
    second.log_eval(10, {"score": 0.2})
    second.finish(TrialResult(trial_dir=None, global_step=10, accumulated_submission_time=2.0))
    runs = finished_runs(offline["WANDB_DIR"], 2)
    assert [r["id"] for r in runs] == [run_id, run_id]
    assert [h["_step"] for r in runs for h in r["history"]] == [5, 10]
    other = tracking.TrialTracker({"wandb": True}, **{**common, "trial_dir": str(tmp_path / "t2")})
    other.run.finish()
    assert (tmp_path / "t2" / tracking.RUN_ID_FILE).read_text().strip() != run_id


def test_reader_rejects_a_file_that_is_not_a_run(tmp_path):
    bad = tmp_path / "run-x.wandb"
    bad.write_bytes(b"not a run")
    with pytest.raises(ValueError, match="not a W&B run file"):
        list(tracking.offline_records(str(bad)))


def test_wandb_without_a_login_is_one_clear_error(tmp_path, monkeypatch):
    """Online mode with no API key: one line naming --wandb and the two ways out, no
    traceback."""
    import subprocess
    import sys

    from tests.conftest import REPO, SUBPROCESS_ENV
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(SUBPROCESS_ENV, HOME=str(tmp_path), WANDB_MODE="online", PYTHONPATH=REPO,
               WANDB_DIR=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-m", "algoperf.cli", "run", "--workload=mnist_tiny",
         "--submission_path=submissions/nadamw/submission.py",
         "--tuning_search_space=submissions/nadamw/tuning_search_space.json",
         f"--experiment_dir={tmp_path}", "--experiment_name=x", "--max_global_steps=2",
         "--wandb"], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert out.returncode == 1
    assert "algoperf run: error: --wandb: W&B could not start a run" in out.stderr
    assert "WANDB_MODE=offline" in out.stderr and "Traceback" not in out.stderr
