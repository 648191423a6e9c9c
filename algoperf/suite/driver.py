"""The suite's loop: skip finished trials, run the rest on an executor, show progress.

    plan ──(trial_state: done/failed skipped)──> to_run ──submit──> executor (≤ num_workers)
                                                      <──outcome── done / failed

Trials are submitted in ``plan.run_order``: a workload's submissions side by side.

Progress lines (every ``progress_every`` seconds and at every finished trial):

    suite: 5/12 finished (4 done, 1 failed), 2 running, 5 queued | 3m02s elapsed, ETA 3m40s

ETA = elapsed / trials finished in this run x trials left: the observed rate, so it already
accounts for how many trials run side by side.
"""
import dataclasses
import signal
import sys
import time
from typing import Callable, Dict, List, Optional, TextIO

from algoperf.suite.plan import TrialSpec, run_order, trial_state
from algoperf.suite.task import TrialOutcome, TrialTask


@dataclasses.dataclass
class SuiteSummary:
    skipped: Dict[str, int]            # trials already finished before this run, by state
    outcomes: List[TrialOutcome]       # trials run now
    seconds: float
    interrupted: bool = False

    @property
    def failed(self) -> List[TrialOutcome]:
        return [o for o in self.outcomes if o.state == "failed"]

    @property
    def in_use(self) -> List[TrialOutcome]:
        return [o for o in self.outcomes if o.state == "in_use"]


def select(plan: List[TrialSpec], retry_failed: bool = False):
    """(trials to run, counts of the skipped ones by state). Partial trials are resumed."""
    to_run, skipped = [], {"done": 0, "failed": 0}
    for spec in plan:
        state = trial_state(spec)
        if state == "done" or (state == "failed" and not retry_failed):
            skipped[state] += 1
        else:
            to_run.append(spec)
    return to_run, skipped


def format_duration(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def progress_line(total: int, done: int, failed: int, running: int, elapsed: float,
                  finished_now: int) -> str:
    """One progress line; ``finished_now`` counts trials finished in this run (for the ETA)."""
    finished = done + failed
    left = total - finished
    if left == 0:
        eta = "ETA 0m00s"
    elif finished_now:
        eta = f"ETA {format_duration(elapsed / finished_now * left)}"
    else:
        eta = "ETA unknown"
    queued = left - running
    return (f"suite: {finished}/{total} finished ({done} done, {failed} failed), "
            f"{running} running, {queued} queued | {format_duration(elapsed)} elapsed, {eta}")


def run_plan(plan: List[TrialSpec], make_task: Callable[[TrialSpec], TrialTask], executor,
             retry_failed: bool = False, progress_every: float = 30.0,
             poll_every: float = 0.5, out: Optional[TextIO] = None) -> SuiteSummary:
    """Run every unfinished trial of ``plan`` on ``executor``; one code path for all executors.

    A failed trial is recorded (in its folder) and the rest go on. Ctrl-C / SIGTERM stops the
    running trials; they are left partial and the next run resumes them.
    """
    out = out or sys.stdout
    to_run, skipped = select(plan, retry_failed)
    total, start = len(plan), time.time()
    print(f"suite: {total} trials planned; {skipped['done']} already done, "
          f"{skipped['failed']} already failed{' (not retried)' if skipped['failed'] else ''}, "
          f"{len(to_run)} to run on {executor.name}"
          + (f" with {executor.num_workers} workers" if executor.num_workers else ""),
          file=out, flush=True)
    tasks = [make_task(spec) for spec in run_order(to_run)]
    handles = [(executor.submit(task), task) for task in tasks]
    outcomes: List[TrialOutcome] = []
    pending = list(handles)
    last_print = time.time()
    previous_handler = _raise_on_sigterm()
    interrupted = False
    try:
        while pending:
            finished = [(h, t) for h, t in pending if h.done()]
            for handle, task in finished:
                pending.remove((handle, task))
                outcome = executor.outcome(handle, task)
                outcomes.append(outcome)
                mark = {"done": "done", "in_use": f"skipped, in use ({outcome.reason})"}.get(
                    outcome.state, f"FAILED ({outcome.reason})")
                print(f"suite: {outcome.spec.label}: {mark} in "
                      f"{format_duration(outcome.seconds)}", file=out, flush=True)
            if finished or time.time() - last_print >= progress_every:
                n_done = skipped["done"] + sum(o.state == "done" for o in outcomes)
                n_failed = skipped["failed"] + sum(o.state == "failed" for o in outcomes)
                running = min(len(pending), executor.num_workers or len(pending))
                print(progress_line(total, n_done, n_failed, running, time.time() - start,
                                    len(outcomes)), file=out, flush=True)
                last_print = time.time()
            if pending:
                time.sleep(poll_every)
    except KeyboardInterrupt:
        interrupted = True
        print("suite: interrupted; stopping the running trials (re-run the same command to "
              "resume them)", file=out, flush=True)
        executor.stop()
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        if not interrupted:
            executor.close()
    return SuiteSummary(skipped=skipped, outcomes=outcomes, seconds=time.time() - start,
                        interrupted=interrupted)


def _raise_on_sigterm():
    """SIGTERM (e.g. ``kill``, a scheduler stopping the driver) acts like Ctrl-C."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    return signal.signal(signal.SIGTERM, handler)
