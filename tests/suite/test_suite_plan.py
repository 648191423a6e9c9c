"""``algoperf suite``'s plan, trial states, progress/ETA and loop (no training: fast)."""
import concurrent.futures
import io
import json
import os

import pytest

from algoperf import search_space
from algoperf.suite import driver, plan
from algoperf.suite.task import TrialOutcome, TrialTask
from tests.conftest import REPO, run_cli

FIXTURES = os.path.join(REPO, "tests", "suite", "fixtures")


def make(tmp_path, **overrides):
    args = dict(output_dir=str(tmp_path), submissions=["quick", "broken"],
                workloads=["mnist_tiny"], num_studies=2, num_trials=3, rng_seed=0,
                submissions_dir=FIXTURES)
    args.update(overrides)
    return plan.make_plan(**args)


def test_plan_is_the_full_product_in_algoperf_layout(tmp_path):
    trials = make(tmp_path)
    assert len(trials) == 2 * 1 * 2 * 3
    assert [(t.submission, t.study, t.trial) for t in trials[:4]] == [
        ("quick", 0, 1), ("quick", 0, 2), ("quick", 0, 3), ("quick", 1, 1)]
    t = trials[4]
    assert t.trial_dir == os.path.join(str(tmp_path), "external_tuning", "quick", "study_1",
                                       "mnist_tiny_pytorch", "trial_2")
    assert t.submission_path == os.path.join(FIXTURES, "quick", "submission.py")
    # Study seeds are the benchmark's: equal within a study, different across studies.
    assert trials[0].study_seed == trials[1].study_seed == plan.study_seed(0, 0)
    assert trials[3].study_seed == plan.study_seed(0, 1) != trials[0].study_seed
    self_tuning = make(tmp_path, tuning_ruleset="self", num_trials=1)
    assert "self_tuning" in self_tuning[0].trial_dir and self_tuning[0].search_space_path is None


def test_trials_start_workload_by_workload_with_the_submissions_side_by_side(tmp_path):
    trials = make(tmp_path, workloads=["mnist_tiny", "cifar_wrn_tiny"], num_trials=1)
    started = [(t.study, t.workload, t.submission) for t in plan.run_order(trials)]
    # cifar_wrn_tiny's budget (240 s) is longer than mnist_tiny's (15 s): it goes first.
    assert started == [(0, "cifar_wrn_tiny", "broken"), (0, "cifar_wrn_tiny", "quick"),
                       (0, "mnist_tiny", "broken"), (0, "mnist_tiny", "quick"),
                       (1, "cifar_wrn_tiny", "broken"), (1, "cifar_wrn_tiny", "quick"),
                       (1, "mnist_tiny", "broken"), (1, "mnist_tiny", "quick")]
    assert sorted(started) == sorted((t.study, t.workload, t.submission) for t in trials)


def test_tiny_workloads_take_the_tiny_search_space_when_one_is_shipped(tmp_path):
    for name in ("both", "full_only"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "submission.py").write_text("")
        (tmp_path / name / plan.SEARCH_SPACE_FILE).write_text("{}")
    (tmp_path / "both" / plan.TINY_SEARCH_SPACE_FILE).write_text("[]")
    trials = plan.make_plan(str(tmp_path / "out"), ["both", "full_only"],
                            ["mnist_tiny", "mnist"], 1, 1, submissions_dir=str(tmp_path))
    spaces = {(t.submission, t.workload): os.path.basename(t.search_space_path)
              for t in trials}
    assert spaces == {("both", "mnist_tiny"): plan.TINY_SEARCH_SPACE_FILE,
                      ("both", "mnist"): plan.SEARCH_SPACE_FILE,
                      ("full_only", "mnist_tiny"): plan.SEARCH_SPACE_FILE,
                      ("full_only", "mnist"): plan.SEARCH_SPACE_FILE}
    # Every shipped baseline has a tiny space whose first point the default suite runs.
    for name in plan.shipped_submissions():
        space = os.path.join(plan.REPO_SUBMISSIONS_DIR, name, plan.TINY_SEARCH_SPACE_FILE)
        assert os.path.isfile(space), name
        (first,) = search_space.draw_hyperparameters(search_space.load_search_space(space), 1)
        assert first.learning_rate > 0
        # What the benchmarks read as a baseline's default point is the suite's trial 1.
        assert search_space.hyperparameters_to_dict(first) == plan.shipped_tiny_points(name)[0]


def test_defaults_are_found_at_run_time(tmp_path):
    shipped = plan.shipped_submissions()
    folder = os.path.join(REPO, "submissions")
    expected = sorted(d for d in os.listdir(folder)
                      if os.path.isfile(os.path.join(folder, d, "submission.py"))
                      and os.path.isfile(os.path.join(folder, d, "tuning_search_space.json")))
    assert shipped == expected and {"adamw", "nadamw", "sgd_nesterov"} <= set(shipped)
    assert "optimizers" not in shipped
    # A new submission folder joins the default without any list being edited.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "submission.py").write_text("")
    (tmp_path / "mine" / "tuning_search_space.json").write_text("{}")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "submission.py").write_text("")
    assert plan.shipped_submissions(str(tmp_path)) == ["mine"]
    from workloads import registry
    tiny = plan.tiny_workloads()
    assert "mnist_tiny" in tiny and all(w.endswith("_tiny") for w in tiny)
    assert tiny == [w for w in registry.names() if w.endswith("_tiny")]


@pytest.mark.parametrize("overrides, message", [
    (dict(submissions=["nope"]), "'nope' has no pytorch submission"),
    (dict(workloads=["mnist_tinyy"]), "unknown workload(s) mnist_tinyy"),
    (dict(num_studies=0), "--num_studies=0"),
    (dict(num_trials=0), "--num_trials=0"),
    (dict(tuning_ruleset="self"), "self-tuning runs one trial"),
    (dict(submissions=[]), "--submissions: none given"),
])
def test_bad_input_is_one_clear_error(tmp_path, overrides, message):
    with pytest.raises(plan.SuiteError) as error:
        make(tmp_path, **overrides)
    assert message in str(error.value)


def test_bad_flag_on_the_command_line_is_one_line_without_traceback(tmp_path):
    out = run_cli("suite", f"--output_dir={tmp_path}", "--workloads=mnist_tinyy")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("algoperf suite: error: --workloads")
    assert "Traceback" not in out.stderr and not (tmp_path / "external_tuning").exists()
    out = run_cli("suite", f"--output_dir={tmp_path}", "--num_workers=0",
                  "--workloads=mnist_tiny", "--submissions=nadamw")
    assert out.returncode == 1 and "--num_workers=0: must be >= 1" in out.stderr


def test_trial_state_is_read_from_the_folder(tmp_path):
    spec = make(tmp_path)[0]
    assert plan.trial_state(spec) == "pending"
    os.makedirs(spec.trial_dir)
    assert plan.trial_state(spec) == "partial"
    with open(os.path.join(spec.trial_dir, "failed.json"), "w") as f:
        json.dump({"reason": "x"}, f)
    assert plan.trial_state(spec) == "failed"
    open(os.path.join(spec.trial_dir, plan.DONE_FILE), "w").close()
    assert plan.trial_state(spec) == "done"


def test_task_command_runs_exactly_one_trial_and_resumes(tmp_path):
    spec = make(tmp_path)[4]  # quick, study 1, trial 2
    task = TrialTask(spec, data_dir="/data", max_global_steps=7, num_threads=3,
                     extra_flags=("--wandb",))
    argv = task.command()
    assert argv[1:4] == ["-m", "algoperf.cli", "run"]
    assert set(argv[4:]) == {
        "--workload=mnist_tiny", f"--submission_path={spec.submission_path}",
        "--tuning_ruleset=external", "--num_tuning_trials=3", "--hparam_start_index=1",
        "--hparam_end_index=2", f"--experiment_dir={tmp_path}/external_tuning",
        "--experiment_name=quick/study_1", "--framework=pytorch",
        f"--rng_seed={plan.study_seed(0, 1)}", "--resume_last_run",
        f"--tuning_search_space={spec.search_space_path}", "--data_dir=/data",
        "--max_global_steps=7", "--wandb"}
    assert task.environment()["OMP_NUM_THREADS"] == "3"


@pytest.mark.parametrize("done, failed, running, elapsed, now, expected", [
    (0, 0, 2, 5.0, 0, "suite: 0/10 finished (0 done, 0 failed), 2 running, 8 queued | "
                      "0m05s elapsed, ETA unknown"),
    # 4 finished in this run in 120 s; 6 left -> 120 / 4 * 6 = 180 s.
    (3, 1, 2, 120.0, 4, "suite: 4/10 finished (3 done, 1 failed), 2 running, 4 queued | "
                        "2m00s elapsed, ETA 3m00s"),
    # 5 were skipped (done before); 2 finished now in 60 s; 3 left -> 90 s.
    (6, 1, 1, 60.0, 2, "suite: 7/10 finished (6 done, 1 failed), 1 running, 2 queued | "
                       "1m00s elapsed, ETA 1m30s"),
    (9, 1, 0, 3725.0, 10, "suite: 10/10 finished (9 done, 1 failed), 0 running, 0 queued | "
                          "1h02m elapsed, ETA 0m00s"),
])
def test_progress_line_and_eta(done, failed, running, elapsed, now, expected):
    assert driver.progress_line(10, done, failed, running, elapsed, now) == expected


class FakeTask:
    """Marks the trial done (or failed for submission 'broken') without training."""

    def __init__(self, spec, calls):
        self.spec, self.calls = spec, calls

    def __call__(self):
        self.calls.append(self.spec.label)
        os.makedirs(self.spec.trial_dir, exist_ok=True)
        if self.spec.submission == "broken":
            with open(os.path.join(self.spec.trial_dir, "failed.json"), "w") as f:
                json.dump({"reason": "boom"}, f)
            return TrialOutcome(self.spec, "failed", 0.0, 1, "boom")
        open(os.path.join(self.spec.trial_dir, plan.DONE_FILE), "w").close()
        return TrialOutcome(self.spec, "done", 0.0, 0)


class FakeExecutor:
    name, num_workers = "fake", 2

    def __init__(self):
        self.pool = concurrent.futures.ThreadPoolExecutor(2)

    def submit(self, task):
        return self.pool.submit(task)

    outcome = staticmethod(lambda handle, task: handle.result())

    def stop(self):
        pass

    def close(self):
        self.pool.shutdown()


def test_loop_isolates_failures_and_skips_finished_trials_on_rerun(tmp_path):
    trials = make(tmp_path, num_studies=1, num_trials=2)
    calls, out = [], io.StringIO()
    summary = driver.run_plan(trials, lambda s: FakeTask(s, calls), FakeExecutor(),
                              poll_every=0.01, out=out)
    assert sorted(calls) == sorted(t.label for t in trials)
    assert [o.state for o in sorted(summary.outcomes, key=lambda o: o.spec.label)] == [
        "failed", "failed", "done", "done"]
    assert "4/4 finished (2 done, 2 failed)" in out.getvalue()
    assert "FAILED (boom)" in out.getvalue()

    # Re-run: nothing is redone; failed ones only with retry_failed.
    calls.clear()
    summary = driver.run_plan(trials, lambda s: FakeTask(s, calls), FakeExecutor(),
                              poll_every=0.01, out=io.StringIO())
    assert calls == [] and summary.skipped == {"done": 2, "failed": 2}
    # A trial whose folder lost its done marker (interrupted) runs again, alone.
    os.remove(os.path.join(trials[0].trial_dir, plan.DONE_FILE))
    summary = driver.run_plan(trials, lambda s: FakeTask(s, calls), FakeExecutor(),
                              poll_every=0.01, out=io.StringIO())
    assert calls == [trials[0].label]
    calls.clear()
    driver.run_plan(trials, lambda s: FakeTask(s, calls), FakeExecutor(), retry_failed=True,
                    poll_every=0.01, out=io.StringIO())
    assert sorted(calls) == sorted(t.label for t in trials if t.submission == "broken")
