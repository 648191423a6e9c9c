"""One trial as a callable: the unit both executors run (a local worker thread, a Slurm job).

``TrialTask()`` starts ``python -m algoperf.cli run ...`` for exactly one trial in a child
process (so a crash, a NaN or a hung library takes down one trial, never the suite), always with
``--resume_last_run`` (a fresh trial starts fresh; an interrupted or requeued one continues from
its last eval checkpoint), writes the child's output beside the trial's logs, and records the
outcome in the trial folder: ``suite_done.json`` on exit 0, else ``failed.json`` (the runner
writes it for failures inside training; the task writes it for everything else: a submission
that does not import, a killed process).

Under Slurm, submitit calls ``checkpoint()`` when the job is preempted or hits its time limit:
it returns the same task, which submitit requeues, and the requeued job resumes the trial.

A trial process dies with the process that started it (Linux ``PR_SET_PDEATHSIG``): a suite
driver killed with kill -9 leaves no orphan trials behind to race the next run's. A trial whose
folder another live process owns (``algoperf run`` exits with ``EXIT_IN_USE``) is reported as
in use, never recorded as failed: its owner is still working on it.
"""
import dataclasses
import functools
import json
import os
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Set, Tuple

from algoperf import logger_utils
from algoperf.folder_lock import EXIT_IN_USE
from algoperf.suite.plan import DONE_FILE, OUTPUT_FILE, TrialSpec

REPO_ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
# Child processes running now in this process (the local pool stops them on Ctrl-C).
_RUNNING: Set[subprocess.Popen] = set()
_RUNNING_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class TrialOutcome:
    spec: TrialSpec
    state: str            # done | failed | in_use (another process owns the folder) |
                          # interrupted (the suite was stopped: partial)
    seconds: float
    returncode: int
    reason: str = ""


@dataclasses.dataclass
class TrialTask:
    spec: TrialSpec
    data_dir: Optional[str] = None
    max_global_steps: Optional[int] = None
    num_threads: int = 1
    extra_flags: Tuple[str, ...] = ()   # e.g. the --wandb* flags, passed to `algoperf run`
    python: str = sys.executable
    # The suite's working directory: a submission's imports by package path start there, as
    # in AlgoPerf (algoperf.submission_loader).
    cwd: str = dataclasses.field(default_factory=os.getcwd)
    # The cores the trial's process is pinned to (the local executor's slot); None: any.
    cores: Optional[Tuple[int, ...]] = None

    def command(self) -> List[str]:
        """The ``algoperf run`` command line of this one trial."""
        s = self.spec
        argv = [self.python, "-m", "algoperf.cli", "run", f"--workload={s.workload}",
                f"--submission_path={s.submission_path}", f"--tuning_ruleset={s.tuning_ruleset}",
                f"--num_tuning_trials={s.num_trials}", f"--hparam_start_index={s.trial - 1}",
                f"--hparam_end_index={s.trial}", f"--experiment_dir={s.runs_dir}",
                f"--experiment_name={s.experiment_name}", f"--framework={s.framework}",
                f"--rng_seed={s.study_seed}", "--resume_last_run"]
        if s.search_space_path:
            argv.append(f"--tuning_search_space={s.search_space_path}")
        if self.data_dir:
            argv.append(f"--data_dir={self.data_dir}")
        if self.max_global_steps is not None:
            argv.append(f"--max_global_steps={self.max_global_steps}")
        return argv + list(self.extra_flags)

    def environment(self) -> Dict[str, str]:
        """Each worker gets cores / workers threads: more only adds contention."""
        threads = str(max(1, self.num_threads))
        pythonpath = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
        return dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
                    PYTHONPATH=pythonpath)

    def __call__(self) -> TrialOutcome:
        trial_dir = self.spec.trial_dir
        os.makedirs(trial_dir, exist_ok=True)
        start = time.time()
        with open(os.path.join(trial_dir, OUTPUT_FILE), "a") as log:
            pinned = f" (pinned to cores {','.join(map(str, self.cores))})" if self.cores else ""
            log.write(f"$ {' '.join(self.command())}{pinned}\n")
            log.flush()
            child = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.environment(),
                cwd=self.cwd, preexec_fn=functools.partial(_in_trial_process, self.cores))
            with _RUNNING_LOCK:
                _RUNNING.add(child)
            try:
                returncode = child.wait()
            finally:
                with _RUNNING_LOCK:
                    _RUNNING.discard(child)
            if returncode in (-2, -15) and _STOPPING.is_set():
                return TrialOutcome(self.spec, "interrupted", time.time() - start, returncode)
        seconds = time.time() - start
        return self.record(returncode, seconds)

    def record(self, returncode: int, seconds: float) -> TrialOutcome:
        trial_dir = self.spec.trial_dir
        if returncode == EXIT_IN_USE:
            return TrialOutcome(self.spec, "in_use", seconds, returncode, _last_error_line(
                os.path.join(trial_dir, OUTPUT_FILE), returncode))
        failed_path = os.path.join(trial_dir, logger_utils.FAILED_FILE)
        if returncode == 0 and not os.path.exists(failed_path):
            logger_utils.write_json(os.path.join(trial_dir, DONE_FILE),
                                    {"returncode": 0, "seconds": round(seconds, 3),
                                     "started_at": time.time() - seconds,
                                     "finished_at": time.time(), "command": self.command()})
            return TrialOutcome(self.spec, "done", seconds, returncode)
        if os.path.exists(failed_path):
            with open(failed_path) as f:
                reason = json.load(f).get("reason", "")
        else:
            reason = _last_error_line(os.path.join(trial_dir, OUTPUT_FILE), returncode)
            logger_utils.record_failure(trial_dir, reason, _tail(os.path.join(
                trial_dir, OUTPUT_FILE)))
        return TrialOutcome(self.spec, "failed", seconds, returncode, reason)

    def checkpoint(self, *args, **kwargs):
        """submitit's hook on preemption / timeout: requeue this same trial (it resumes)."""
        import submitit
        return submitit.helpers.DelayedSubmission(self)


def _in_trial_process(cores: Optional[Tuple[int, ...]]) -> None:
    """Runs in the trial's process before ``algoperf run`` starts.

    - Pinned to ``cores`` (when given): a trial keeps its own cores and caches, and the other
      trials' work (their evals, a JAX compile) never runs on them.
    - SIGTERM when the parent dies, however it dies (Linux); if it is already gone, now.
    - Under Slurm, preemption's SIGUSR2 is for submitit (this job's Python process, which
      requeues the task); the trial keeps training until Slurm stops it and then resumes from
      its last eval checkpoint.
    """
    import signal
    if cores:
        os.sched_setaffinity(0, cores)
    _die_with_parent(signal.SIGTERM)
    if "SLURM_JOB_ID" in os.environ:
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def _die_with_parent(sig: int) -> None:
    parent = os.getppid()
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: orphans are possible, the trial-folder lock still guards the logs
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)


_STOPPING = threading.Event()


def stop_running_children() -> None:
    """Ctrl-C / SIGTERM of the suite: stop this process's trials; they stay resumable."""
    _STOPPING.set()
    with _RUNNING_LOCK:
        children = list(_RUNNING)
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()


def _tail(path: str, limit: int = 4000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-limit:]
    except OSError:
        return ""


def _last_error_line(path: str, returncode: int) -> str:
    """The child's one-line error (``algoperf run: error: ...``) or its exit status."""
    lines = [line.strip() for line in _tail(path).splitlines() if line.strip()]
    for line in reversed(lines):
        if "error:" in line.lower() or "Error" in line:
            return line
    if returncode < 0:
        return f"killed by signal {-returncode}"
    return f"algoperf run exited with status {returncode}"
