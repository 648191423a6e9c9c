"""No silent data loss, no rule bypass: the probes of a hostile but realistic user.

Concurrency tests start real processes; the budget test's submission really patches its
workload (``tests/fixtures/budget_patcher.py``).
"""
import json
import os
import resource
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from algoperf import experiment, folder_lock
from workloads.mnist.definition import MnistTinyDefinition
from tests.conftest import FIXTURES, REPO, SUBPROCESS_ENV, run_cli, start_cli, wait_for_rows

SUITE_FIXTURES = os.path.join(REPO, "tests", "suite", "fixtures")
NADAMW = os.path.join(REPO, "submissions", "nadamw", "submission.py")
NADAMW_SPACE = os.path.join(REPO, "submissions", "nadamw", "tuning_search_space.json")


def run_args(tmp_path, data_dir, *extra, submission=f"{FIXTURES}/slow_nadamw.py"):
    return ["run", "--workload=mnist_tiny", f"--submission_path={submission}",
            f"--tuning_search_space={FIXTURES}/never_reaching_search_space.json",
            f"--experiment_dir={tmp_path}", "--experiment_name=exp",
            f"--data_dir={data_dir}", *extra]


def trial_dir(tmp_path, trial=1):
    return tmp_path / "exp" / "mnist_tiny_pytorch" / f"trial_{trial}"


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


# --- 1. two writers on one trial folder ---
@pytest.mark.slow
def test_a_second_writer_is_refused_while_the_first_trains(tmp_path, tiny_data_dir):
    first = start_cli(*run_args(tmp_path, tiny_data_dir, "--rng_seed=1",
                                "--max_global_steps=100000"))
    csv = trial_dir(tmp_path) / "eval_measurements.csv"
    try:
        wait_for_rows(csv, 2)
        for flag in ("--resume_last_run", "--overwrite"):
            second = run_cli(*run_args(tmp_path, tiny_data_dir, flag))
            assert second.returncode == folder_lock.EXIT_IN_USE, second.stderr
            (line,) = [x for x in second.stderr.splitlines() if x.startswith("algoperf run")]
            assert f"trial_1 is in use by pid {first.pid}" in line
            assert "Traceback" not in second.stderr
        rows_now = len(pd.read_csv(csv))
        wait_for_rows(csv, rows_now + 1)  # the first run is still writing, into its folder
    finally:
        first.kill()
        first.wait()
    evals = pd.read_csv(csv)
    assert evals["global_step"].is_unique and evals["global_step"].is_monotonic_increasing
    assert set(evals["preemption_count"]) == {0}
    # Its owner dead (kill -9), the folder is free again.
    resumed = run_cli(*run_args(tmp_path, tiny_data_dir, "--resume_last_run",
                                "--max_global_steps=" + str(evals["global_step"].iloc[-1] + 5)))
    assert resumed.returncode == 0, resumed.stderr


@pytest.mark.slow
def test_trials_die_with_a_killed_suite_driver_and_a_rerun_finishes_them(tmp_path,
                                                                         tiny_data_dir):
    args = ["suite", f"--output_dir={tmp_path}", f"--submissions_dir={SUITE_FIXTURES}",
            "--submissions=slow", "--workloads=mnist_tiny", "--num_workers=1",
            "--max_global_steps=300", f"--data_dir={tiny_data_dir}", "--progress_every=1000"]
    driver = start_cli(*args)
    trial = tmp_path / "external_tuning" / "slow" / "study_0" / "mnist_tiny_pytorch" / \
        "trial_1"
    csv = trial / "eval_measurements.csv"
    try:
        wait_for_rows(csv, 2)
        owner = folder_lock.owner_of(str(trial))["pid"]
        assert owner != driver.pid and alive(owner)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    deadline = time.time() + 30
    while alive(owner) and time.time() < deadline:
        time.sleep(0.2)
    assert not alive(owner), "the trial outlived its suite driver"
    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    evals = pd.read_csv(csv)
    assert evals["global_step"].is_unique and evals["global_step"].is_monotonic_increasing
    assert set(evals["preemption_count"]) == {0, 1}
    # It ended (at the step limit, or at the 15 s budget on a loaded machine), and only once.
    end = json.loads((trial / "complete.json").read_text())
    assert end["stop_reason"] in ("max_global_steps", "budget spent")
    if end["stop_reason"] == "max_global_steps":
        assert end["global_step"] == evals["global_step"].iloc[-1] == 300
    else:  # a spent budget is found between evals, and AlgoPerf evaluates no more then
        assert end["global_step"] >= evals["global_step"].iloc[-1]


def test_a_second_suite_on_the_same_folder_is_refused(tmp_path):
    folder_lock.acquire(str(tmp_path))  # this process plays the running suite
    try:
        out = run_cli("suite", f"--output_dir={tmp_path}", f"--submissions_dir={SUITE_FIXTURES}",
                      "--submissions=quick", "--workloads=mnist_tiny")
    finally:
        folder_lock.release(str(tmp_path))
    assert out.returncode == folder_lock.EXIT_IN_USE
    assert f"is in use by pid {os.getpid()}" in out.stderr


# --- 2. a submission cannot move its own budget, targets or eval period ---
def test_a_submission_patching_its_workload_changes_nothing(tmp_path, tiny_data_dir):
    out = run_cli(*run_args(tmp_path, tiny_data_dir, "--rng_seed=0", "--max_global_steps=250",
                            submission=f"{FIXTURES}/budget_patcher.py"))
    assert out.returncode == 0, out.stderr
    evals = pd.read_csv(trial_dir(tmp_path) / "eval_measurements.csv")
    # Targets of 0 would have stopped it at step 1; an eval period of 10**6 steps would have
    # left the evals after step 1 and the last step only (the tier's step grid: 1, k, 2k, ...).
    k = MnistTinyDefinition.eval_period_steps
    assert list(evals["global_step"]) == [1] + list(range(k, 251, k)) + (
        [250] if 250 % k else [])
    meta = json.loads((trial_dir(tmp_path) / "meta_data_0.json").read_text())
    assert meta["limits"] == {"max_allowed_runtime_sec": 15.0, "budget_sec": 15.0,
                              "eval_period_time_sec": MnistTinyDefinition.eval_period_time_sec,
                              "target_metric_name": "accuracy", "clock": "process_cpu",
                              "validation_target_value": 0.97, "test_target_value": 0.955,
                              "eval_period_steps": MnistTinyDefinition.eval_period_steps}
    # Its reads of held-out data are in the metadata, with its own line.
    assert meta["eval_data_accessed_by_submission"] is True
    whats = [a["what"] for a in meta["eval_data_accesses"]]
    assert "workload.load_arrays(split='validation')" in whats
    assert any(w.startswith("open(") and "mnist_tiny/test/labels.npy" in w for w in whats)
    assert all("budget_patcher.py:" in a["where"] for a in meta["eval_data_accesses"])
    # The scorer notes it.
    scored = run_cli("score", f"--submission_directory={tmp_path}",
                     f"--output_dir={tmp_path / 'scores'}", "--base_workloads=mnist_tiny",
                     "--noheld_out", "--num_studies=1", "--num_trials=1")
    notes = pd.read_csv(tmp_path / "scores" / "notes.csv")
    assert "eval_data_access" in set(notes["kind"]), scored.stdout + scored.stderr


def test_an_honest_submission_is_not_flagged(tmp_path, tiny_data_dir):
    out = run_cli("run", "--workload=mnist_tiny", f"--submission_path={NADAMW}",
                  f"--tuning_search_space={NADAMW_SPACE}", f"--experiment_dir={tmp_path}",
                  "--experiment_name=exp", f"--data_dir={tiny_data_dir}", "--rng_seed=0",
                  "--max_global_steps=5")
    assert out.returncode == 0, out.stderr
    meta = json.loads((trial_dir(tmp_path) / "meta_data_0.json").read_text())
    assert "eval_data_accessed_by_submission" not in meta


# --- 4. resume keeps the seed ---
def nadamw_config(tmp_path, data_dir, **overrides):
    base = dict(workload="mnist_tiny", submission_path=NADAMW,
                tuning_search_space=NADAMW_SPACE, experiment_dir=str(tmp_path),
                experiment_name="exp", data_dir=data_dir, num_tuning_trials=2)
    base.update(overrides)
    return experiment.ExperimentConfig(**base)


def test_resume_takes_the_seed_from_the_logs_and_refuses_another(tmp_path, tiny_data_dir):
    experiment.run_experiment(nadamw_config(tmp_path, tiny_data_dir, rng_seed=5,
                                            max_global_steps=3))
    experiment.run_experiment(nadamw_config(tmp_path, tiny_data_dir, resume_last_run=True,
                                            max_global_steps=6))
    flags = [json.loads((trial_dir(tmp_path) / f"flags_{n}.json").read_text())
             for n in (0, 1)]
    assert [f["rng_seed"] for f in flags] == [5, 5]
    with pytest.raises(experiment.ExperimentError,
                       match=r"--rng_seed=6 conflicts with rng_seed 5 .*flags_0\.json"):
        experiment.run_experiment(nadamw_config(tmp_path, tiny_data_dir, resume_last_run=True,
                                                rng_seed=6, max_global_steps=9))


# --- 5. resume without a checkpoint ---
def test_a_finished_trial_without_checkpoint_is_left_alone_on_resume(tmp_path, tiny_data_dir):
    config = nadamw_config(tmp_path, tiny_data_dir, rng_seed=0, max_global_steps=5,
                           save_checkpoints=False)
    experiment.run_experiment(config)
    def logs():
        return {p.name: p.read_bytes() for p in trial_dir(tmp_path).iterdir()
                if p.name != folder_lock.LOCK_FILE}
    before = logs()
    results = experiment.run_experiment(
        nadamw_config(tmp_path, tiny_data_dir, resume_last_run=True, save_checkpoints=False))
    after = logs()
    assert after == before  # nothing retrained, nothing rewritten, no new flags/meta
    assert [r.global_step for r in results] == [5, 5] and not any(r.failed for r in results)


def test_an_unfinished_trial_without_checkpoint_restarts_and_keeps_its_logs(tmp_path,
                                                                            tiny_data_dir,
                                                                            caplog):
    experiment.run_experiment(nadamw_config(tmp_path, tiny_data_dir, rng_seed=0,
                                            max_global_steps=5, num_tuning_trials=1,
                                            save_checkpoints=False))
    (trial_dir(tmp_path) / "complete.json").unlink()  # as if killed before it ended
    old = (trial_dir(tmp_path) / "eval_measurements.csv").read_text()
    (result,) = experiment.run_experiment(nadamw_config(
        tmp_path, tiny_data_dir, resume_last_run=True, max_global_steps=8, num_tuning_trials=1))
    assert result.global_step == 8
    assert (trial_dir(tmp_path) / "restarted_0" / "eval_measurements.csv").read_text() == old
    assert pd.read_csv(trial_dir(tmp_path) / "eval_measurements.csv")["global_step"].tolist() \
        == [1, 8]
    assert "no checkpoint to resume from" in caplog.text and "restarted_0" in caplog.text


# --- 6. smaller ---
@pytest.mark.parametrize("flags, message", [
    (("--hparam_start_index=-1",), "--hparam_start_index=-1: must be in [0, 2]"),
    (("--hparam_start_index=3",), "--hparam_start_index=3: must be in [0, 2]"),
    (("--hparam_end_index=0",), "--hparam_end_index=0: must be in [1, 3]"),
    (("--hparam_end_index=4",), "--hparam_end_index=4: must be in [1, 3]"),
    (("--hparam_start_index=2", "--hparam_end_index=1"),
     "--hparam_start_index=2 must be smaller than --hparam_end_index=1"),
])
def test_trial_index_ranges_are_checked(tmp_path, flags, message):
    out = run_cli("run", "--workload=mnist_tiny", f"--submission_path={NADAMW}",
                  f"--tuning_search_space={NADAMW_SPACE}", "--num_tuning_trials=3",
                  f"--experiment_dir={tmp_path}", *flags)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert message in out.stderr
    assert not (tmp_path / "experiment").exists()


def test_a_file_as_experiment_dir_is_one_line(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("")
    out = run_cli("run", "--workload=mnist_tiny", f"--submission_path={NADAMW}",
                  f"--tuning_search_space={NADAMW_SPACE}", f"--experiment_dir={path}")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"--experiment_dir={path} is a file, not a folder" in out.stderr


def test_a_full_disk_is_one_line(tmp_path, tiny_data_dir):
    # RLIMIT_FSIZE stands in for a full disk: every write past 20 kB fails (EFBIG).
    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    env = dict(os.environ, PYTHONPATH=REPO, **SUBPROCESS_ENV)
    out = subprocess.run(
        [sys.executable, "-m", "algoperf.cli", "run", "--workload=mnist_tiny",
         f"--submission_path={NADAMW}", f"--tuning_search_space={NADAMW_SPACE}",
         f"--experiment_dir={tmp_path}", f"--data_dir={tiny_data_dir}", "--rng_seed=0",
         "--max_global_steps=20"], capture_output=True, text=True, env=env, cwd=REPO,
        preexec_fn=small_disk, timeout=300)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("algoperf run: error: cannot write the logs") and "too large" in last


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_logs_get_the_permissions_of_the_umask(tmp_path, tiny_data_dir, umask, mode):
    old = os.umask(umask)
    try:
        experiment.run_experiment(nadamw_config(tmp_path, tiny_data_dir, rng_seed=0,
                                                max_global_steps=2, num_tuning_trials=1))
    finally:
        os.umask(old)
    for name in ("eval_measurements.csv", "hparams.json", "flags_0.json", "meta_data_0.json",
                 "complete.json"):
        assert os.stat(trial_dir(tmp_path) / name).st_mode & 0o777 == mode, name


def test_a_suite_in_which_every_trial_failed_exits_non_zero(tmp_path, tiny_data_dir):
    out = run_cli("suite", f"--output_dir={tmp_path}", f"--submissions_dir={SUITE_FIXTURES}",
                  "--submissions=broken", "--workloads=mnist_tiny", "--num_workers=1",
                  "--max_global_steps=3", f"--data_dir={tiny_data_dir}")
    assert out.returncode == 1
    assert "every one of the 1 trials failed" in out.stderr
