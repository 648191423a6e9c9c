"""Submissions written the ways the public AlgoPerf leaderboards write them run unchanged.

The fixtures (``tests/fixtures/compat/``, see its README) each reproduce one pattern; here they
go through ``algoperf run``, the experiment API, ``algoperf check`` and ``algoperf suite``.
"""
import importlib
import json
import os
import sys

import pandas as pd
import pytest

from algoperf import experiment, submission_loader
from tests.conftest import FIXTURES, REPO, run_cli

COMPAT = os.path.join(FIXTURES, "compat")
ROOT_RELATIVE_CWD = os.path.join(FIXTURES, "compat_root")
ROOT_RELATIVE = "submissions/self_tuning/root_relative/submission.py"


def fixture(name):
    return os.path.join(COMPAT, name, "submission.py")


def space(name):
    return os.path.join(COMPAT, name, "tuning_search_space.json")


def evals_of(root, name="exp", workload="mnist_tiny"):
    return pd.read_csv(os.path.join(root, name, f"{workload}_pytorch", "trial_1",
                                    "eval_measurements.csv"))


def run_args(tmp_path, data_dir, name, *extra):
    return ("run", "--workload=mnist_tiny", f"--submission_path={fixture(name)}",
            f"--experiment_dir={tmp_path}", "--experiment_name=exp", f"--data_dir={data_dir}",
            "--rng_seed=0", *extra)


# --- 1. AlgoPerf's old package name ---
def test_the_old_package_name_is_the_same_modules_not_copies():
    import algoperf.pytorch_utils
    import algoperf.random_utils
    import algoperf.spec
    from algorithmic_efficiency import pytorch_utils, random_utils, spec
    assert spec is algoperf.spec and pytorch_utils is algoperf.pytorch_utils
    assert random_utils is algoperf.random_utils
    assert spec.ForwardPassMode.TRAIN is algoperf.spec.ForwardPassMode.TRAIN
    assert algoperf.spec.__spec__.name == "algoperf.spec"  # its own identity is kept
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("algorithmic_efficiency.no_such_module")


def test_a_submission_importing_the_old_package_name_runs(tmp_path, tiny_data_dir):
    out = run_cli(*run_args(tmp_path, tiny_data_dir, "old_package_name",
                            f"--tuning_search_space={space('old_package_name')}",
                            "--max_global_steps=20"))
    assert out.returncode == 0, out.stderr
    assert evals_of(tmp_path)["global_step"].tolist() == [1, 20]


# --- 2. namedtuple hyperparameters inside the state, self-tuning defaults ---
def test_self_tuning_defaults_kept_as_a_namedtuple_checkpoint_and_resume(tmp_path,
                                                                         tiny_data_dir):
    args = run_args(tmp_path, tiny_data_dir, "self_tuning_defaults", "--tuning_ruleset=self")
    first = run_cli(*args, "--max_global_steps=10")
    assert first.returncode == 0, first.stderr
    second = run_cli(*args, "--max_global_steps=20", "--resume_last_run")
    assert second.returncode == 0, second.stderr
    trial_dir = tmp_path / "exp" / "mnist_tiny_pytorch" / "trial_1"
    assert not (trial_dir / "failed.json").exists()
    evals = evals_of(tmp_path)
    assert evals["global_step"].tolist() == [1, 10, 20]
    assert evals["preemption_count"].tolist() == [0, 0, 1]


# --- 3. a package beside the submission; two of the same name in one process ---
def test_sibling_packages_of_the_same_name_never_see_each_other(tmp_path, tiny_data_dir):
    a = submission_loader.load_submission(fixture("sibling_package_a"))
    assert a.scaled_sgd.OWNER == "sibling_package_a"
    b = submission_loader.load_submission(fixture("sibling_package_b"))
    assert b.scaled_sgd.OWNER == "sibling_package_b"
    assert a.scaled_sgd.OWNER == "sibling_package_a"  # a keeps its own module
    assert sys.modules["optimizers.scaled_sgd"] is b.scaled_sgd
    submission_loader.unload_current()
    assert "optimizers" not in sys.modules
    assert COMPAT + "/sibling_package_b" not in sys.path

    # Trained one after the other in one process: b's SCALE is 0, so b must not move.
    losses = {}
    for name in ("sibling_package_a", "sibling_package_b"):
        config = experiment.ExperimentConfig(
            workload="mnist_tiny", submission_path=fixture(name),
            tuning_search_space=space(name), experiment_dir=str(tmp_path),
            experiment_name=name, rng_seed=0, data_dir=tiny_data_dir, max_global_steps=30)
        (result,) = experiment.run_experiment(config)
        losses[name] = [r["validation/loss"] for _, r in result.eval_results]
    assert losses["sibling_package_a"][-1] < losses["sibling_package_a"][0] - 0.1
    assert losses["sibling_package_b"][-1] == losses["sibling_package_b"][0]


def test_a_relative_import_resolves_in_the_submissions_folder(tmp_path, tiny_data_dir):
    module = submission_loader.load_submission(fixture("relative_import"))
    assert module.OWNER == "relative_import"
    assert module.__name__.endswith(".submission")
    helper = sys.modules[module.__name__.rsplit(".", 1)[0] + ".helpers"]
    assert helper.__file__ == os.path.join(COMPAT, "relative_import", "helpers.py")
    submission_loader.unload_current()
    assert module.__name__ not in sys.modules and helper.__name__ not in sys.modules
    out = run_cli("run", "--workload=mnist_tiny", f"--submission_path={fixture('relative_import')}",
                  f"--tuning_search_space={space('relative_import')}",
                  f"--experiment_dir={tmp_path}", "--experiment_name=exp",
                  f"--data_dir={tiny_data_dir}", "--max_global_steps=5")
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "exp" / "mnist_tiny_pytorch" / "trial_1" / "failed.json").exists()


# --- 4. a package path from the working directory ---
def test_a_package_path_from_the_working_directory_resolves(tmp_path, tiny_data_dir):
    # This project has a `submissions` package too; the path must reach the cwd's folder.
    out = run_cli("run", "--workload=mnist_tiny", f"--submission_path={ROOT_RELATIVE}",
                  "--tuning_ruleset=self", f"--experiment_dir={tmp_path}",
                  "--experiment_name=exp", f"--data_dir={tiny_data_dir}",
                  "--max_global_steps=5", cwd=ROOT_RELATIVE_CWD)
    assert out.returncode == 0, out.stderr
    assert evals_of(tmp_path)["global_step"].tolist() == [1, 5]


def test_the_package_path_finder_is_gone_with_its_submission():
    cwd = os.getcwd()
    os.chdir(ROOT_RELATIVE_CWD)
    try:
        module = submission_loader.load_submission(ROOT_RELATIVE)
        assert module.MARKER == "root_relative.helpers"
        assert "submissions.self_tuning.root_relative.helpers" in sys.modules
    finally:
        submission_loader.unload_current()
        os.chdir(cwd)
    assert not any(name.startswith("submissions.self_tuning") for name in sys.modules)
    import submissions.first_order  # this project's own package is untouched
    assert submissions.first_order.__file__.startswith(os.path.join(REPO, "submissions"))


# --- 5. any state a submission can hold, through a checkpoint ---
def test_rich_state_resumes_on_exactly_the_trajectory_of_an_uninterrupted_run(tmp_path,
                                                                              tiny_data_dir):
    def config(name, steps, resume=False):
        return experiment.ExperimentConfig(
            workload="mnist_tiny", submission_path=fixture("rich_state"),
            tuning_search_space=space("rich_state"), experiment_dir=str(tmp_path),
            experiment_name=name, rng_seed=0, data_dir=tiny_data_dir, max_global_steps=steps,
            resume_last_run=resume)
    (whole,) = experiment.run_experiment(config("whole", 24))
    (part,) = experiment.run_experiment(config("parts", 12))
    assert part.checkpoint_left_out == [
        "optimizer_state['on_step']: function cannot be pickled (AttributeError: Can't pickle "
        "local object 'init_optimizer_state.<locals>.<lambda>')"]
    (resumed,) = experiment.run_experiment(config("parts", 24, resume=True))
    assert not resumed.failed, resumed.reason
    assert resumed.eval_results[-1][0] == 24
    assert resumed.eval_results[-1][1]["validation/loss"] == whole.eval_results[-1][1][
        "validation/loss"]
    assert resumed.eval_results[-1][1]["train/accuracy"] == whole.eval_results[-1][1][
        "train/accuracy"]


# --- 6. errors that point at the submission's own code ---
def test_hard_coded_cuda_fails_with_one_line_naming_the_submission(tmp_path, tiny_data_dir):
    out = run_cli(*run_args(tmp_path, tiny_data_dir, "cuda_hardcoded", "--tuning_ruleset=self",
                            "--max_global_steps=3"))
    assert out.returncode == 1
    record = json.loads((tmp_path / "exp" / "mnist_tiny_pytorch" / "trial_1" /
                         "failed.json").read_text())
    assert "cuda_hardcoded/submission.py:20 in <dictcomp>" in record["reason"]
    assert "this machine has no CUDA device" in record["reason"]
    assert out.stderr.strip().splitlines()[-1].startswith("algoperf run: error: every trial")


def test_a_submission_with_a_syntax_error_is_one_line(tmp_path):
    broken = tmp_path / "submission.py"
    broken.write_text("def get_batch_size(name):\n    return 16 +\n")
    out = run_cli("run", "--workload=mnist_tiny", f"--submission_path={broken}",
                  "--tuning_ruleset=self", f"--experiment_dir={tmp_path}")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"{broken}:2: SyntaxError" in out.stderr


def test_a_failing_import_names_the_submission_line(tmp_path):
    broken = tmp_path / "submission.py"
    broken.write_text("import os\nimport no_such_package_here\n")
    with pytest.raises(submission_loader.SubmissionError,
                       match=r"ModuleNotFoundError.*submission\.py:2 in <module>"):
        submission_loader.load_submission(str(broken))


def test_a_folder_as_submission_path_says_which_file_to_give():
    with pytest.raises(submission_loader.SubmissionError,
                       match=r"is a folder.*did you mean .*old_package_name/submission\.py"):
        submission_loader.load_submission(os.path.join(COMPAT, "old_package_name"))


# --- 7. algoperf check ---
def test_check_passes_a_working_submission_and_names_the_broken_line(tiny_data_dir):
    good = run_cli("check", f"--submission_path={fixture('rich_state')}",
                   "--workloads=mnist_tiny", f"--data_dir={tiny_data_dir}")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "mnist_tiny" in good.stdout and " ok (3 steps, checkpoint, resume" in good.stdout
    assert "the checkpoint leaves out optimizer_state['on_step']" in good.stdout
    bad = run_cli("check", f"--submission_path={fixture('broken_line')}",
                  "--workloads=mnist_tiny", f"--data_dir={tiny_data_dir}")
    assert bad.returncode == 1
    line = next(x for x in bad.stdout.splitlines() if "mnist_tiny" in x)
    assert "FAILED: KeyError: 'lr' (at tests/fixtures/compat/broken_line/submission.py:19 " \
           "in update_params" in line
    assert "0 of 1 workloads ok" in bad.stdout


@pytest.mark.slow
@pytest.mark.parametrize("baseline", ["adamw", "nadamw", "sgd_nesterov", "shampoo",
                                      "kfac_expand", "kfac_reduce"])
def test_check_passes_every_shipped_baseline_on_every_tiny_workload(baseline, tiny_data_dir):
    out = run_cli("check", f"--submission_path=submissions/{baseline}/submission.py",
                  f"--data_dir={tiny_data_dir}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 of 4 workloads ok" in out.stdout


# --- 8. the suite, with folder paths and the suite's working directory ---
@pytest.mark.slow
def test_the_suite_runs_every_pattern(tmp_path, tiny_data_dir):
    external = ",".join(os.path.join(COMPAT, n) for n in (
        "old_package_name", "sibling_package_a", "sibling_package_b", "rich_state",
        "relative_import"))
    out = run_cli("suite", f"--submissions={external}", "--workloads=mnist_tiny",
                  f"--output_dir={tmp_path / 'external'}", f"--data_dir={tiny_data_dir}",
                  "--max_global_steps=30", "--num_workers=2", "--progress_every=1000")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ran 5 trials" in out.stdout and "(0 failed)" in out.stdout
    self_tuning = ",".join([os.path.join(COMPAT, "self_tuning_defaults"),
                            os.path.dirname(ROOT_RELATIVE)])
    out = run_cli("suite", f"--submissions={self_tuning}", "--workloads=mnist_tiny",
                  "--tuning_ruleset=self", f"--output_dir={tmp_path / 'self'}",
                  f"--data_dir={tiny_data_dir}", "--max_global_steps=30", "--num_workers=2",
                  "--progress_every=1000", cwd=ROOT_RELATIVE_CWD)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ran 2 trials" in out.stdout and "(0 failed)" in out.stdout
