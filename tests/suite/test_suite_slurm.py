"""``algoperf suite --executor=slurm``: the same plan as one Slurm job per trial (submitit).

The end-to-end test needs a running Slurm: a one-node cluster on localhost that
``.ci/install_slurm.sh`` installs and starts (CI runs it first). Where there is none and it
cannot be started here (not root, no slurm-wlm), the test is skipped and says why.
"""
import os
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest

from algoperf.suite import plan
from algoperf.suite.task import TrialTask
from tests.conftest import REPO, SUBPROCESS_ENV

submitit = pytest.importorskip("submitit", reason="submitit not installed (pip install -e "
                               "'.[cluster]')")

FIXTURES = os.path.join(REPO, "tests", "suite", "fixtures")
INSTALL = os.path.join(REPO, ".ci", "install_slurm.sh")


def slurm_is_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True,
                         timeout=30)
    return out.returncode == 0 and any(s.strip().rstrip("*") in ("idle", "mixed", "allocated")
                                       for s in out.stdout.splitlines())


def slurm_job_of(slurm_dir, submission: str) -> str:
    """The Slurm job id of the trial of ``submission``: read from what submitit pickled."""
    jobs = {}
    for path in slurm_dir.glob("*_submitted.pkl"):
        task = submitit.helpers.DelayedSubmission.load(str(path)).function
        jobs[task.spec.submission] = path.name.split("_")[0]
    assert submission in jobs, f"no Slurm job for {submission!r} in {sorted(jobs)}"
    return jobs[submission]


@pytest.fixture(scope="session")
def slurm_cluster():
    """A working one-node Slurm, started with .ci/install_slurm.sh --start-only if needed."""
    if slurm_is_up():
        return
    if not shutil.which("slurmctld"):
        pytest.skip("no Slurm here: run `sudo .ci/install_slurm.sh` (installs slurm-wlm and "
                    "munge, starts a one-node cluster on localhost)")
    if os.geteuid() != 0:
        pytest.skip("Slurm is installed but not running, and starting it needs root: run "
                    "`sudo .ci/install_slurm.sh --start-only`")
    out = subprocess.run(["bash", INSTALL, "--start-only"], capture_output=True, text=True,
                         timeout=180)
    if out.returncode != 0 or not slurm_is_up():
        pytest.skip(f"could not start a local Slurm: {(out.stderr or out.stdout)[-500:]}")


def test_requeue_hook_resubmits_the_same_trial(tmp_path):
    spec = plan.make_plan(str(tmp_path), ["quick"], ["mnist_tiny"], 1, 1,
                          submissions_dir=FIXTURES)[0]
    task = TrialTask(spec, max_global_steps=5)
    delayed = task.checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.function is task and "--resume_last_run" in task.command()


@pytest.mark.skipif(shutil.which("srun") is None,
                    reason="submitit's SlurmExecutor needs srun on PATH (.ci/run installs Slurm)")
def test_slurm_flags_become_job_parameters(tmp_path):
    from algoperf.suite.executors import SlurmExecutor
    executor = SlurmExecutor(str(tmp_path), partition="gpu", account="lab", time_min=90,
                             gpus_per_job=8, cpus_per_job=16)
    script = executor._executor._make_submission_file_text("python -c pass", "%j")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --time=90",
                 "#SBATCH --gpus-per-node=8", "#SBATCH --cpus-per-task=16"):
        assert line in script, script
    assert "#SBATCH --signal=USR2@60" in script  # submitit's requeue signal, 60 s before
    with pytest.raises(plan.SuiteError, match="--slurm_time_min=0"):
        SlurmExecutor(str(tmp_path), time_min=0)


@pytest.mark.slow
def test_suite_runs_trials_as_slurm_jobs_and_a_preempted_one_resumes(tmp_path, tiny_data_dir,
                                                                      slurm_cluster):
    """Two trials as two Slurm jobs (quick, slow); the slow one is preempted mid-run."""
    steps = 400
    runs = tmp_path / "external_tuning"
    trial_dir = runs / "slow" / "study_0" / "mnist_tiny_pytorch" / "trial_1"
    csv = trial_dir / "eval_measurements.csv"
    suite = subprocess.Popen(
        [sys.executable, "-m", "algoperf.cli", "suite", f"--output_dir={tmp_path}",
         f"--submissions_dir={FIXTURES}", "--submissions=slow,quick", "--workloads=mnist_tiny",
         f"--max_global_steps={steps}", f"--data_dir={tiny_data_dir}", "--executor=slurm",
         "--slurm_time_min=10", "--progress_every=5"],
        env=dict(os.environ, PYTHONPATH=REPO, **SUBPROCESS_ENV), cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not (csv.exists() and len(pd.read_csv(csv)) >= 3):
        assert time.time() < deadline and suite.poll() is None, "trial never logged 3 evals"
        time.sleep(0.2)
    job_id = slurm_job_of(tmp_path / "slurm", "slow")
    # What Slurm sends before preempting (or at the time limit): submitit requeues the job.
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
    # Slurm holds a requeued job back for a while (BeginTime); start it now to save the wait.
    while suite.poll() is None and not (trial_dir / "flags_1.json").exists():
        state = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r"],
                               capture_output=True, text=True, timeout=30).stdout
        if "PENDING" in state and "BeginTime" in state:
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"],
                           timeout=30)
        assert time.time() < deadline + 240, "the requeued job never started"
        time.sleep(1)
    out, _ = suite.communicate(timeout=400)
    assert suite.returncode == 0, out[-3000:]
    assert "2 to run on slurm" in out and "2/2 finished (2 done, 0 failed)" in out
    assert "rank  submission" in out
    quick = runs / "quick" / "study_0" / "mnist_tiny_pytorch" / "trial_1"
    assert (quick / "suite_done.json").exists()
    assert pd.read_csv(quick / "eval_measurements.csv")["global_step"].iloc[-1] == steps
    # submitit's per-job logs: one stdout file per Slurm job.
    assert len(list((tmp_path / "slurm").glob("*_log.out"))) == 2
    evals = pd.read_csv(csv)
    assert set(evals["preemption_count"]) == {0, 1}, evals
    assert evals["global_step"].is_unique and evals["global_step"].iloc[-1] == steps
    assert (trial_dir / "flags_1.json").exists() and (trial_dir / "suite_done.json").exists()
    log = "".join(p.read_text() for p in (tmp_path / "slurm").glob("*_log.err"))
    assert "Requeued job" in log or "requeue" in log.lower()
