"""The trial's clock (``algoperf.clocks``): wall time, AlgoPerf's rule, or the process's CPU
time, the tiny tier's; and the suite's pinning of each worker's trials to its own cores."""
import dataclasses
import json
import os
from typing import Optional, Tuple

import pandas as pd
import pytest

from algoperf import clocks, experiment, runner
from algoperf.suite import executors
from tests.conftest import FIXTURES
from workloads import registry

SLEEP_PER_STEP = 0.01  # tests/fixtures/slow_nadamw.py
STEPS = 60


def sleepy_config(tmp_path, data_dir, name, **overrides):
    return experiment.ExperimentConfig(
        workload="mnist_tiny", submission_path=os.path.join(FIXTURES, "slow_nadamw.py"),
        tuning_search_space=os.path.join(FIXTURES, "never_reaching_search_space.json"),
        experiment_dir=str(tmp_path), experiment_name=name, data_dir=data_dir, rng_seed=0,
        max_global_steps=STEPS, **overrides)


def submission_time(tmp_path, name):
    evals = pd.read_csv(tmp_path / name / "mnist_tiny_pytorch" / "trial_1" /
                        "eval_measurements.csv")
    return evals["accumulated_submission_time"].iloc[-1]


def test_process_cpu_leaves_out_waiting_and_wall_counts_it(tmp_path, tiny_data_dir):
    # A submission that sleeps 10 ms a step: real time passes, its process does no work.
    experiment.run_experiment(sleepy_config(tmp_path, tiny_data_dir, "wall", clock="wall"))
    experiment.run_experiment(sleepy_config(tmp_path, tiny_data_dir, "cpu"))  # mnist_tiny's
    slept = STEPS * SLEEP_PER_STEP
    wall, cpu = submission_time(tmp_path, "wall"), submission_time(tmp_path, "cpu")
    assert wall >= slept
    assert cpu < 0.5 * slept, (wall, cpu)  # ~1 ms of work a step
    meta = json.loads((tmp_path / "cpu" / "mnist_tiny_pytorch" / "trial_1" /
                       "meta_data_0.json").read_text())
    assert meta["limits"]["clock"] == "process_cpu"


def test_a_resume_on_another_clock_is_refused(tmp_path, tiny_data_dir):
    experiment.run_experiment(sleepy_config(tmp_path, tiny_data_dir, "exp"))
    config = sleepy_config(tmp_path, tiny_data_dir, "exp", clock="wall", resume_last_run=True)
    with pytest.raises(experiment.ExperimentError,
                       match=r"--clock=wall conflicts with the clock 'process_cpu' .*"
                             r"meta_data_0\.json.*resume it with --clock=process_cpu"):
        experiment.run_experiment(config)


def test_the_tiny_tier_counts_cpu_time_and_full_size_workloads_wall_time():
    for name in registry.names():
        definition = registry.get_definition(name)
        expected = clocks.PROCESS_CPU if name.endswith("_tiny") else clocks.WALL
        assert runner.Limits.of(definition, False).clock == expected, name
    tiny = registry.get_definition("mnist_tiny")
    assert runner.Limits.of(tiny, False, clocks.WALL).clock == clocks.WALL
    with pytest.raises(ValueError, match="clock 'gpu' is not one of wall, process_cpu"):
        runner.Limits.of(tiny, False, "gpu")


def test_core_sets_split_this_process_cores_evenly(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 6})
    assert executors.core_sets(1) == [(0, 1, 2, 3, 6)]
    assert executors.core_sets(2) == [(0, 1), (2, 3)]  # the fifth core is left idle
    assert executors.core_sets(5) == [(0,), (1,), (2,), (3,), (6,)]
    assert executors.core_sets(6) is None  # more workers than cores: no pinning


@dataclasses.dataclass
class CoresSeen:
    """A stand-in TrialTask: its outcome is the cores the executor pinned it to."""
    cores: Optional[Tuple[int, ...]] = None

    def __call__(self):
        return self.cores


@pytest.mark.parametrize("pin_cores", [True, False])
def test_the_local_executor_runs_tasks_pinned_or_not(pin_cores):
    executor = executors.LocalExecutor(2, pin_cores=pin_cores)
    try:
        seen = [executor.submit(CoresSeen()).result(timeout=30) for _ in range(3)]
    finally:
        executor.close()
    if not pin_cores or executor.core_sets is None:
        assert seen == [None] * 3
    else:
        assert all(cores in executor.core_sets for cores in seen)
