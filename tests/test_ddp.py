"""Two CPU processes under torchrun (gloo) agree with one process on the same global batch:
for NAdamW (DDP's gradient all-reduce) and for K-FAC-reduce (its factors are averaged over
the processes too; the empirical Fisher makes the curvature deterministic)."""
import pandas as pd
import pytest

from tests.conftest import run_python

STEPS = 30

SUBMISSIONS = {
    "nadamw": ("submissions/nadamw/submission.py",
               "tests/fixtures/algoperf_style_search_space.json"),
    "kfac_reduce": ("submissions/kfac_reduce/submission.py",
                    "tests/fixtures/kfac_empirical_point.json"),
}


def _run(tmp_path, data_dir, name, nproc, submission="nadamw"):
    submission_path, search_space = SUBMISSIONS[submission]
    run_python("-m", "algoperf.cli", "run", "--workload=mnist_tiny",
               f"--submission_path={submission_path}",
               f"--tuning_search_space={search_space}",
               f"--experiment_dir={tmp_path}", f"--experiment_name={name}", "--rng_seed=5",
               f"--data_dir={data_dir}", f"--max_global_steps={STEPS}", nproc=nproc)
    return pd.read_csv(tmp_path / name / "mnist_tiny_pytorch" / "trial_1" /
                       "eval_measurements.csv")


@pytest.mark.slow
@pytest.mark.parametrize("submission", sorted(SUBMISSIONS))
def test_two_processes_match_one_process(tmp_path, tiny_data_dir, submission):
    one = _run(tmp_path, tiny_data_dir, "one", 1, submission)
    two = _run(tmp_path, tiny_data_dir, "two", 2, submission)
    assert one["global_step"].iloc[-1] == two["global_step"].iloc[-1] == STEPS
    # Same global batch, same updates: losses agree up to float32 reduction order.
    for column in ("train/loss", "validation/loss", "test/loss"):
        assert two[column].iloc[-1] == pytest.approx(one[column].iloc[-1], rel=1e-5, abs=1e-6)
    # Every example is evaluated once across the two processes.
    assert two["validation/num_examples"].iloc[-1] == 2000
    # Only rank 0 writes logs: one row per eval, no duplicates.
    assert two["global_step"].is_unique


LEAVE_SCRIPT = r"""
import atexit, glob, os, socket
import torch.distributed as dist
from algoperf import pytorch_utils
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
os.environ.update(LOCAL_RANK="0", RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                  MASTER_PORT=str(port))
def gloo_threads():
    names = [open(task + "/comm").read().strip() for task in glob.glob("/proc/self/task/*")]
    return sum("gloo" in name for name in names)
pytorch_utils.pytorch_init(True, 0)
import torch.distributed.nn  # what a submission imports, after the runner has joined
print("joined", dist.is_initialized(), gloo_threads() > 0)
atexit._run_exitfuncs()  # what interpreter exit runs first, while Python is still alive
print("left", not dist.is_initialized(), gloo_threads() == 0)
"""


def test_a_process_leaves_its_group_before_the_interpreter_is_torn_down():
    # Gloo threads left to finalisation abort the process after a successful run (SIGABRT);
    # leaving the group must stop them, even with a submission's collectives imported.
    out = run_python("-c", LEAVE_SCRIPT)
    assert out.stdout.split() == ["joined", "True", "True", "left", "True", "True"]
