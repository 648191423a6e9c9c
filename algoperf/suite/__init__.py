"""Running many trials: the plan, one trial as a task, executors (local pool, Slurm), scoring.

``plan`` (what to run, where it logs, each trial's state from its folder) -> ``task`` (one trial
in a child process) -> ``executors`` (local worker pool or submitit/Slurm) -> ``driver`` (the
loop: skip finished, progress, ETA) -> ``scores`` (score the folder, report and plot).
"""
