"""The clock a trial's time is measured on: the one rule of what a second of submission time is.

    wall         time.time(): real seconds (AlgoPerf's rule; the default of every full-size
                 workload). Anything else running on the machine slows the trial down and is
                 counted.
    process_cpu  time.process_time(): CPU seconds of the trial's own process, user + system,
                 summed over its threads (the default of the _tiny tier, where two trials share
                 the cores of a laptop). Semantics:
                 - time the process spends waiting is not counted: for the CPU, for a disk read,
                   for another process (a data-loader worker, a second trial on the same core);
                 - work done for the trial in other processes is not counted either (loader
                   worker processes, a GPU's kernels): it is a CPU-only, in-process clock, for
                   workloads whose input pipeline runs inside the trial's process (the tiny
                   tier's does);
                 - a process whose threads run on k cores at once can count up to k seconds
                   per real second (the suite pins each trial to its own cores and gives it
                   as many threads as cores, so this is the work actually done).

The runner reads the clock through its backend (``backend.clock``), which first waits for the
device; every time the runner logs (submission, eval, logging, total) is in the trial's clock,
and ``meta_data_<n>.json`` records which one under ``limits.clock``.
"""
import time
from typing import Callable, Dict

WALL = "wall"
PROCESS_CPU = "process_cpu"
CLOCKS: Dict[str, Callable[[], float]] = {WALL: time.time, PROCESS_CPU: time.process_time}


def reader(name: str) -> Callable[[], float]:
    """The function that reads clock ``name`` (seconds; only differences are meaningful)."""
    try:
        return CLOCKS[name]
    except KeyError:
        raise ValueError(f"clock {name!r} is not one of {', '.join(CLOCKS)}") from None
