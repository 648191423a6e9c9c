"""Running submissions end to end on mnist_tiny: logs, failures, bad input, seeds, resume."""
import json
import os
import signal

import pandas as pd
import pytest

from algoperf import experiment
from tests.conftest import FIXTURES, REPO, run_cli, start_cli, wait_for_rows

EVAL_COLUMNS = {"score", "accumulated_submission_time", "accumulated_eval_time",
                "accumulated_logging_time", "total_duration", "global_step",
                "preemption_count", "train/accuracy", "train/loss", "validation/accuracy",
                "validation/loss", "test/accuracy", "test/loss", "validation/num_examples",
                "test/num_examples"}


def config(tmp_path, data_dir, **overrides):
    base = dict(workload="mnist_tiny",
                submission_path=os.path.join(REPO, "submissions/nadamw/submission.py"),
                tuning_search_space=os.path.join(REPO, "submissions/nadamw/"
                                                 "tuning_search_space.json"),
                experiment_dir=str(tmp_path), experiment_name="exp", rng_seed=0,
                data_dir=data_dir)
    base.update(overrides)
    return experiment.ExperimentConfig(**base)


def read_evals(trial_dir):
    return pd.read_csv(os.path.join(trial_dir, "eval_measurements.csv"))


def test_failing_trials_are_recorded_and_the_next_trial_runs(tmp_path, tiny_data_dir):
    cfg = config(tmp_path, tiny_data_dir,
                 submission_path=os.path.join(FIXTURES, "faulty_submission.py"),
                 tuning_search_space=os.path.join(FIXTURES, "faulty_search_space.json"),
                 num_tuning_trials=4, max_global_steps=8)
    results = experiment.run_experiment(cfg)
    assert [r.failed for r in results] == [True, True, True, False]
    root = tmp_path / "exp" / "mnist_tiny_pytorch"
    reasons = [json.loads((root / f"trial_{k}" / "failed.json").read_text())["reason"]
               for k in (1, 2, 3)]
    assert "deliberate failure at step 3" in reasons[0]
    assert "nan" in reasons[1].lower() and "diverged" in reasons[1]
    assert "must return (optimizer_state, params, model_state)" in reasons[2]
    # The evals logged before the failures are kept.
    assert read_evals(root / "trial_1")["global_step"].tolist() == [1]
    assert read_evals(root / "trial_2")["global_step"].iloc[0] == 1
    assert not (root / "trial_4" / "failed.json").exists()
    assert read_evals(root / "trial_4")["global_step"].iloc[-1] == 8


def test_logs_are_in_algoperf_layout_with_its_columns(tmp_path, tiny_data_dir):
    cfg = config(tmp_path, tiny_data_dir, num_tuning_trials=2, max_global_steps=20,
                 num_studies=2)
    experiment.run_experiment(cfg)
    for study in (0, 1):
        for trial in (1, 2):
            trial_dir = tmp_path / "exp" / f"study_{study}" / "mnist_tiny_pytorch" / \
                f"trial_{trial}"
            evals = read_evals(trial_dir)
            assert EVAL_COLUMNS <= set(evals.columns)
            assert (evals["score"] == evals["accumulated_submission_time"]).all()
            assert evals["validation/num_examples"].iloc[0] == 2000
            hparams = json.loads((trial_dir / "hparams.json").read_text())
            assert {"learning_rate", "one_minus_beta1", "beta2", "weight_decay"} <= set(hparams)
            meta = json.loads((trial_dir / "meta_data_0.json").read_text())
            assert meta["rng_seed"] == 0 and meta["packages"]["torch"].startswith("2.")
            assert "git_hash" in meta and "cpu_model" in meta
            flags = json.loads((trial_dir / "flags_0.json").read_text())
            assert flags["rng_seed"] == 0
            assert (trial_dir / "measurements.csv").exists()
    # Each study and trial draws its own hyperparameters.
    points = {json.dumps(json.loads(p.read_text()), sort_keys=True)
              for p in tmp_path.glob("exp/study_*/*/trial_*/hparams.json")}
    assert len(points) == 4


def final_validation_loss(tmp_path, data_dir, seed, name):
    cfg = config(tmp_path, data_dir, experiment_name=name, rng_seed=seed,
                 max_global_steps=25)
    (result,) = experiment.run_experiment(cfg)
    step, last = result.eval_results[-1]
    assert step == 25
    return last["validation/loss"]


def test_same_seed_same_losses_and_another_seed_differs(tmp_path, tiny_data_dir):
    a = final_validation_loss(tmp_path, tiny_data_dir, 3, "a")
    b = final_validation_loss(tmp_path, tiny_data_dir, 3, "b")
    c = final_validation_loss(tmp_path, tiny_data_dir, 4, "c")
    assert a == b
    assert a != c


# --- bad input: one clear error, non-zero exit, nothing logged lost ----------------------
def test_unknown_workload_lists_the_known_ones(tmp_path):
    out = run_cli("run", "--workload=mnist_tinyy", "--submission_path=submissions/nadamw/"
                  "submission.py", "--tuning_ruleset=self", f"--experiment_dir={tmp_path}")
    assert out.returncode != 0
    assert "mnist_tinyy" in out.stderr and "mnist_tiny" in out.stderr.split("known:")[1]
    assert "Traceback" not in out.stderr


def test_malformed_search_space_names_the_file(tmp_path, tiny_data_dir):
    bad = tmp_path / "space.json"
    bad.write_text('{"learning_rate": {"min": 1, "max": 0.1, "scaling": "log"}}')
    out = run_cli("run", "--workload=mnist_tiny", "--submission_path=submissions/nadamw/"
                  "submission.py", f"--tuning_search_space={bad}",
                  f"--data_dir={tiny_data_dir}", f"--experiment_dir={tmp_path}")
    assert out.returncode != 0
    assert str(bad) in out.stderr and "Traceback" not in out.stderr


def test_missing_data_dir_says_how_to_prepare(tmp_path):
    out = run_cli("run", "--workload=mnist", "--submission_path=submissions/nadamw/"
                  "submission.py", "--tuning_ruleset=self",
                  f"--data_dir={tmp_path / 'nothing_here'}", f"--experiment_dir={tmp_path}")
    assert out.returncode != 0
    assert "nothing_here" in out.stderr and "algoperf data" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_flag_value_is_rejected(tmp_path):
    out = run_cli("run", "--workload=mnist_tiny", "--num_tuning_trials=many")
    assert out.returncode != 0 and "num_tuning_trials" in out.stderr


def test_existing_logs_are_not_overwritten_without_asking(tmp_path, tiny_data_dir):
    cfg = config(tmp_path, tiny_data_dir, max_global_steps=3)
    experiment.run_experiment(cfg)
    csv = tmp_path / "exp" / "mnist_tiny_pytorch" / "trial_1" / "eval_measurements.csv"
    before = csv.read_text()
    with pytest.raises(experiment.ExperimentError, match="--resume_last_run.*--overwrite"):
        experiment.run_experiment(cfg)
    assert csv.read_text() == before


# --- AlgoPerf compatibility, end to end ----------------------------------------------------
# AlgoPerf's own files cannot be vendored here; our fixture uses the same API surface. A user
# with an AlgoPerf checkout points ALGOPERF_SUBMISSION at e.g. its
# algorithms/baselines/external_tuning/pytorch_nadamw_full_budget.py to run it unchanged.
COMPAT_SUBMISSIONS = [os.path.join(FIXTURES, "algoperf_style_nadamw.py")] + (
    [os.environ["ALGOPERF_SUBMISSION"]] if os.environ.get("ALGOPERF_SUBMISSION") else [])


@pytest.mark.slow
@pytest.mark.parametrize("submission", COMPAT_SUBMISSIONS)
def test_algoperf_submission_runs_unchanged_and_reaches_the_target(tmp_path, tiny_data_dir,
                                                                   submission):
    out = run_cli("run", "--workload=mnist_tiny", f"--submission_path={submission}",
                  f"--tuning_search_space={FIXTURES}/algoperf_style_search_space.json",
                  f"--experiment_dir={tmp_path}", "--experiment_name=compat", "--rng_seed=0",
                  f"--data_dir={tiny_data_dir}")
    assert out.returncode == 0, out.stderr
    assert "reached validation target" in out.stderr
    evals = read_evals(tmp_path / "compat" / "mnist_tiny_pytorch" / "trial_1")
    assert EVAL_COLUMNS <= set(evals.columns)
    assert evals["validation/accuracy"].iloc[-1] >= 0.97
    assert evals["test/accuracy"].iloc[-1] >= 0.955
    assert evals["score"].iloc[-1] < 15.0


# --- kill -9 and resume ----------------------------------------------------------------------
@pytest.mark.slow
def test_kill_then_resume_logs_every_eval_once_and_continues_the_trajectory(tmp_path,
                                                                            tiny_data_dir):
    steps = 600
    args = ["run", "--workload=mnist_tiny",
            f"--submission_path={FIXTURES}/slow_nadamw.py",
            f"--tuning_search_space={FIXTURES}/never_reaching_search_space.json",
            f"--experiment_dir={tmp_path}", "--rng_seed=1", f"--data_dir={tiny_data_dir}",
            f"--max_global_steps={steps}"]
    csv = tmp_path / "killed" / "mnist_tiny_pytorch" / "trial_1" / "eval_measurements.csv"
    proc = start_cli(*args, "--experiment_name=killed")
    wait_for_rows(csv, 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows_before_kill = len(pd.read_csv(csv))
    assert 3 <= rows_before_kill and pd.read_csv(csv)["global_step"].iloc[-1] < steps

    out = run_cli(*args, "--experiment_name=killed", "--resume_last_run")
    assert out.returncode == 0, out.stderr
    evals = pd.read_csv(csv)
    assert evals["global_step"].is_unique and evals["global_step"].is_monotonic_increasing
    assert evals["score"].is_monotonic_increasing
    assert evals["global_step"].iloc[-1] == steps
    assert set(evals["preemption_count"]) == {0, 1}
    assert len(list(csv.parent.glob("meta_data_*.json"))) == 2

    # The resumed run ends exactly where an uninterrupted one does.
    out = run_cli(*args, "--experiment_name=uninterrupted")
    assert out.returncode == 0, out.stderr
    reference = pd.read_csv(tmp_path / "uninterrupted" / "mnist_tiny_pytorch" / "trial_1"
                            / "eval_measurements.csv")
    assert evals["validation/loss"].iloc[-1] == pytest.approx(
        reference["validation/loss"].iloc[-1], rel=1e-6)
