"""Where trials run: a local pool of worker processes, or Slurm through submitit.

Both take a ``TrialTask`` and hand back a handle with ``done()`` and ``result()``, so the
suite's loop (``algoperf.suite.driver.run_plan``) is one code path for both:

    LocalExecutor(num_workers)   a thread per worker slot; each thread runs TrialTask(), which
                                 waits on its own child process (the trial); each slot owns
                                 its share of the cores, and its trials are pinned to it
    SlurmExecutor(folder, ...)   one Slurm job per trial (submitit pickles the TrialTask; the
                                 job runs it on the node and pickles the TrialOutcome back)
"""
import concurrent.futures
import dataclasses
import os
import queue
from typing import List, Optional, Tuple

from algoperf.suite.plan import SuiteError
from algoperf.suite.task import TrialOutcome, TrialTask, stop_running_children


class LocalExecutor:
    name = "local"

    def __init__(self, num_workers: int, pin_cores: bool = True):
        if num_workers < 1:
            raise SuiteError(f"--num_workers={num_workers}: must be >= 1")
        self.num_workers = num_workers
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=num_workers,
                                                           thread_name_prefix="trial")
        self.core_sets = core_sets(num_workers) if pin_cores else None
        self._free_cores: "queue.SimpleQueue[Tuple[int, ...]]" = queue.SimpleQueue()
        for cores in self.core_sets or ():
            self._free_cores.put(cores)

    def submit(self, task: TrialTask):
        if self.core_sets:
            return self._pool.submit(self._run_pinned, task)
        return self._pool.submit(task)

    def _run_pinned(self, task: TrialTask) -> TrialOutcome:
        """Run ``task`` on a free slot's cores (one slot per worker thread, so one is free)."""
        cores = self._free_cores.get()
        try:
            return dataclasses.replace(task, cores=cores)()
        finally:
            self._free_cores.put(cores)

    @staticmethod
    def outcome(handle, task: TrialTask) -> TrialOutcome:
        return handle.result()

    def stop(self) -> None:
        """Stop the running trials (they stay resumable) and drop the queued ones."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        stop_running_children()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def core_sets(num_workers: int) -> Optional[List[Tuple[int, ...]]]:
    """This process's cores in ``num_workers`` disjoint, equal shares (a spare core goes
    unused), or None when there are fewer cores than workers (trials then share them)."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None
    share = len(cores) // num_workers
    if share == 0:
        return None
    return [tuple(cores[i * share:(i + 1) * share]) for i in range(num_workers)]


class SlurmExecutor:
    """submitit's SlurmExecutor: one job per trial; preempted / timed-out jobs are requeued."""
    name = "slurm"

    def __init__(self, folder: str, partition: Optional[str] = None,
                 account: Optional[str] = None, time_min: int = 60, gpus_per_job: int = 0,
                 cpus_per_job: int = 1):
        try:
            import submitit
        except ImportError as error:
            raise SuiteError("--executor=slurm needs submitit: pip install -e '.[cluster]'"
                             ) from error
        if time_min < 1:
            raise SuiteError(f"--slurm_time_min={time_min}: must be >= 1")
        if gpus_per_job < 0:
            raise SuiteError(f"--gpus_per_job={gpus_per_job}: must be >= 0")
        self.num_workers = 0  # Slurm decides how many run at once
        os.makedirs(folder, exist_ok=True)
        self._executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=10)
        params = dict(time=time_min, cpus_per_task=cpus_per_job, ntasks_per_node=1, nodes=1,
                      job_name="algoperf_trial", signal_delay_s=60)
        if partition:
            params["partition"] = partition
        if account:
            params["account"] = account
        if gpus_per_job:
            params["gpus_per_node"] = gpus_per_job
        self._executor.update_parameters(**params)
        self._jobs = []

    def submit(self, task: TrialTask):
        job = self._executor.submit(task)
        self._jobs.append(job)
        return job

    @staticmethod
    def outcome(job, task: TrialTask) -> TrialOutcome:
        """The job's TrialOutcome; a job that died outside the task is recorded as failed."""
        try:
            return job.result()
        except Exception as error:  # noqa: BLE001 - a failed job is one failed trial
            return task.record(returncode=1, seconds=0.0) if _has_record(task) else \
                _failed(task, f"Slurm job {job.job_id} failed: {str(error).strip()[-500:]}")

    def stop(self) -> None:
        for job in self._jobs:
            if not job.done():
                job.cancel(check=False)

    def close(self) -> None:
        pass


def _has_record(task: TrialTask) -> bool:
    from algoperf import logger_utils
    return os.path.exists(os.path.join(task.spec.trial_dir, logger_utils.FAILED_FILE))


def _failed(task: TrialTask, reason: str) -> TrialOutcome:
    from algoperf import logger_utils
    logger_utils.record_failure(task.spec.trial_dir, reason)
    return TrialOutcome(task.spec, "failed", 0.0, 1, reason)
