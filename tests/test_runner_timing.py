"""The runner's timing rules, checked exactly with a scripted clock.

The fake backend's clock only moves when the fake submission or workload says so: each
``update_params`` costs STEP seconds, ``data_selection`` DATA seconds, each eval EVAL
seconds, ``prepare_for_eval`` PREP seconds. So every accumulated time has a closed form.
"""
import types

import numpy as np
import pytest

from algoperf import runner, spec

STEP, DATA, EVAL, PREP = 1.0, 0.25, 7.0, 0.5


class FakeClockBackend:
    is_chief = True
    world_size = 1

    def __init__(self):
        self.now = 1000.0

    checkpoint_name = "checkpoint.pt"

    def clock(self, *wait_for):
        return self.now

    def barrier(self):
        pass

    def save_checkpoint(self, *args, **kwargs):
        raise AssertionError("checkpoints are off in these tests")


class ScriptedWorkload:
    """Accuracy rises by ``gain`` per step; eval costs EVAL seconds of wall time."""

    name = base_workload_name = "scripted"
    is_variant = False
    target_metric_name = "accuracy"
    loss_type = spec.LossType.SOFTMAX_CROSS_ENTROPY
    model_params_types = {}
    eval_batch_size = 4

    def __init__(self, backend, budget=100.0, eval_period=10.0, target=0.5, gain=0.01,
                 test_target=None):
        self.backend, self.max_allowed_runtime_sec = backend, budget
        self.eval_period_time_sec, self.validation_target_value = eval_period, target
        self.test_target_value = target if test_target is None else test_target
        self.gain, self.metrics_logger = gain, None
        self.evals = []

    def _build_input_queue(self, data_rng, split, data_dir, global_batch_size):
        return iter(range(10**9))

    def init_model_fn(self, rng):
        return {"steps": 0}, None

    def attach_metrics_logger(self, logger):
        self.metrics_logger = logger

    def eval_model(self, batch_size, params, model_state, rng, data_dir, v2_dir, step):
        self.backend.now += EVAL
        acc = params["steps"] * self.gain
        self.evals.append(step)
        return {"validation/accuracy": acc, "test/accuracy": acc, "validation/loss": 1 - acc}

    def has_reached_validation_target(self, r):
        return r["validation/accuracy"] >= self.validation_target_value

    def has_reached_test_target(self, r):
        return r["test/accuracy"] >= self.test_target_value


def make_submission(backend, *, complete_at=None, prepare=False, train_state_seen=None):
    def get_batch_size(name):
        return 4

    def init_optimizer_state(workload, params, model_state, hparams, rng):
        return {}

    def data_selection(workload, queue, opt, params, model_state, hparams, step, rng):
        backend.now += DATA
        return next(queue)

    def update_params(workload, current_param_container, current_params_types, model_state,
                      hyperparameters, batch, loss_type, optimizer_state, eval_results,
                      global_step, rng, train_state=None):
        if train_state_seen is not None:
            train_state_seen.append((dict(train_state), train_state))
        backend.now += STEP
        if complete_at is not None and global_step + 1 >= complete_at:
            raise spec.TrainingCompleteError()
        current_param_container["steps"] += 1
        return optimizer_state, current_param_container, model_state

    module = types.SimpleNamespace(get_batch_size=get_batch_size,
                                   init_optimizer_state=init_optimizer_state,
                                   data_selection=data_selection, update_params=update_params)
    if prepare:
        def prepare_for_eval(workload, params, types_, model_state, hparams, loss_type, opt,
                             eval_results, step, rng):
            backend.now += PREP
            return opt, params, model_state
        module.prepare_for_eval = prepare_for_eval
    return module


def run(workload, submission, backend, **config):
    config = runner.TrialConfig(data_dir="unused", save_checkpoints=False, **config)
    return runner.train_once(workload, submission, backend, None, np.zeros(2, np.uint32),
                             None, config)


def test_submission_time_counts_data_selection_and_update_only():
    backend = FakeClockBackend()
    workload = ScriptedWorkload(backend, budget=1e9, eval_period=10.0, target=0.05, gain=0.001)
    result = run(workload, make_submission(backend), backend)
    # Target 0.05 at gain 0.001 -> reached after 50 steps, seen at the first eval after it.
    per_step = STEP + DATA
    for step, r in result.eval_results:
        assert r["accumulated_submission_time"] == pytest.approx(step * per_step)
        assert r["score"] == r["accumulated_submission_time"]
    # Eval wall time is off the submission clock but accumulated separately.
    last = result.eval_results[-1][1]
    assert last["accumulated_eval_time"] == pytest.approx(EVAL * len(result.eval_results))
    assert last["total_duration"] == pytest.approx(
        last["accumulated_submission_time"] + last["accumulated_eval_time"])


def test_evals_start_after_first_step_then_every_eval_period():
    backend = FakeClockBackend()
    workload = ScriptedWorkload(backend, budget=1e9, eval_period=10.0, target=0.05, gain=0.001)
    run(workload, make_submission(backend), backend)
    # First eval after step 1 (last_eval_time starts at 0), then whenever >= 10 s of wall
    # time passed since the previous eval ended: 8 steps of 1.25 s = 10 s.
    assert workload.evals[:4] == [1, 9, 17, 25]
    assert workload.evals[-1] == 57  # first eval at or after step 50


def test_the_eval_period_starts_after_the_eval_points_logging():
    # Logging and checkpointing an eval point take 30 s here, three periods: were the period
    # counted from the end of the eval, every step would be an eval.
    backend = FakeClockBackend()
    workload = ScriptedWorkload(backend, budget=1e9, eval_period=10.0, target=0.05, gain=0.001)

    def slow_logging(step, row):
        backend.now += 30.0
    run(workload, make_submission(backend), backend, on_eval=slow_logging)
    assert workload.evals[:4] == [1, 9, 17, 25] and workload.evals[-1] == 57


def test_on_a_step_grid_the_eval_steps_do_not_depend_on_the_clock():
    """eval_period_steps = 8: steps 1, 8, 16, ..., however long each step takes, so that two
    runs of the same training evaluate the same steps (the tiny tier)."""
    evals = []
    for step_seconds in (1.0, 2.5):
        backend = FakeClockBackend()
        workload = ScriptedWorkload(backend, budget=1e9, eval_period=10.0, target=0.05,
                                    gain=0.001)
        workload.eval_period_steps = 8
        submission = make_submission(backend)
        honest_update = submission.update_params

        def update_params(*args, **kwargs):
            backend.now += step_seconds - STEP
            return honest_update(*args, **kwargs)
        submission.update_params = update_params
        result = run(workload, submission, backend)
        evals.append(workload.evals)
        assert result.time_to_target == pytest.approx(56 * (step_seconds + DATA))
        assert result.step_to_target == 56
    assert evals[0] == evals[1] == [1, 8, 16, 24, 32, 40, 48, 56]
    for bad in (0, 2.5, True):
        workload.eval_period_steps = bad
        with pytest.raises(ValueError, match="eval_period_steps"):
            runner.Limits.of(workload, self_tuning=False)


def test_stops_when_validation_and_test_targets_reached():
    backend = FakeClockBackend()
    workload = ScriptedWorkload(backend, budget=1e9, eval_period=0.0, target=0.05, gain=0.01)
    result = run(workload, make_submission(backend), backend)
    assert result.global_step == 5 and result.reached_validation and result.reached_test
    assert result.time_to_target == pytest.approx(5 * (STEP + DATA))
    assert result.step_to_target == 5


def test_validation_target_alone_does_not_stop_training():
    backend = FakeClockBackend()
    workload = ScriptedWorkload(backend, budget=1e9, eval_period=0.0, target=0.05, gain=0.01,
                                test_target=0.08)
    result = run(workload, make_submission(backend), backend)
    assert result.global_step == 8


def test_budget_is_checked_at_eval_points_and_no_eval_once_spent():
    backend = FakeClockBackend()
    workload = ScriptedWorkload(backend, budget=20.0, eval_period=5.0, target=2.0)
    result = run(workload, make_submission(backend), backend)
    times = [r["accumulated_submission_time"] for _, r in result.eval_results]
    assert max(times) < 20.0
    # The loop ended at the first eval point whose accumulated time reached the budget.
    assert result.accumulated_submission_time >= 20.0
    assert result.accumulated_submission_time - times[-1] <= 5.0 + STEP + DATA
    assert not result.reached_validation and result.time_to_target is None


def test_self_tuning_budget_is_one_and_a_half_times():
    backend = FakeClockBackend()
    workload = ScriptedWorkload(backend, budget=20.0, eval_period=0.0, target=2.0)
    external = run(workload, make_submission(backend), backend)
    backend = FakeClockBackend()
    workload = ScriptedWorkload(backend, budget=20.0, eval_period=0.0, target=2.0)
    self_tuned = run(workload, make_submission(backend), backend, self_tuning=True)
    assert external.global_step == 16   # 16 * 1.25 = 20.0 >= 20
    assert self_tuned.global_step == 24  # 24 * 1.25 = 30.0 >= 30


def test_max_global_steps_and_final_eval():
    backend = FakeClockBackend()
    workload = ScriptedWorkload(backend, budget=1e9, eval_period=1e9, target=2.0)
    result = run(workload, make_submission(backend), backend, max_global_steps=7)
    assert result.global_step == 7
    assert workload.evals == [1, 7]  # after step 1, and the final eval at the last step


def test_training_complete_error_ends_with_one_final_eval():
    backend = FakeClockBackend()
    workload = ScriptedWorkload(backend, budget=1e9, eval_period=1e9, target=2.0)
    result = run(workload, make_submission(backend, complete_at=4), backend)
    assert result.global_step == 4 and workload.evals == [1, 4]


def test_prepare_for_eval_is_timed():
    backend = FakeClockBackend()
    workload = ScriptedWorkload(backend, budget=1e9, eval_period=0.0, target=0.05, gain=0.01)
    result = run(workload, make_submission(backend, prepare=True), backend)
    for step, r in result.eval_results:
        assert r["accumulated_submission_time"] == pytest.approx(step * (STEP + DATA + PREP))


def test_train_state_is_read_only_and_current():
    backend = FakeClockBackend()
    seen = []
    workload = ScriptedWorkload(backend, budget=1e9, eval_period=0.0, target=0.03, gain=0.01)
    run(workload, make_submission(backend, train_state_seen=seen), backend)
    snapshot, live_view = seen[1]
    assert snapshot["accumulated_submission_time"] == pytest.approx(STEP + DATA)
    with pytest.raises(TypeError):
        live_view["accumulated_submission_time"] = 0.0


def test_update_params_returning_wrong_shape_fails_the_trial():
    backend = FakeClockBackend()
    submission = make_submission(backend)
    submission.update_params = lambda **kwargs: kwargs["optimizer_state"]
    workload = ScriptedWorkload(backend)
    with pytest.raises(runner.TrialFailed, match="must return"):
        run(workload, submission, backend)


def test_variant_batch_size_falls_back_to_base_workload():
    def get_batch_size(name):
        if name != "mnist":
            raise ValueError(name)
        return 16
    workload = types.SimpleNamespace(name="mnist_tiny", base_workload_name="mnist",
                                     is_variant=True)
    assert runner.global_batch_size_for(types.SimpleNamespace(get_batch_size=get_batch_size),
                                        workload) == 16
    base = types.SimpleNamespace(name="ogbg", base_workload_name="ogbg", is_variant=False)
    with pytest.raises(ValueError):
        runner.global_batch_size_for(types.SimpleNamespace(get_batch_size=get_batch_size), base)


def test_a_submission_cannot_move_budget_targets_or_eval_period_it_is_held_to():
    backend = FakeClockBackend()
    workload = ScriptedWorkload(backend, budget=20.0, eval_period=5.0, target=2.0)
    submission = make_submission(backend)
    honest_init = submission.init_optimizer_state

    def init_optimizer_state(workload, params, model_state, hparams, rng):
        workload.max_allowed_runtime_sec = 1e9
        workload.eval_period_time_sec = 0.0
        workload.eval_period_steps = 1
        workload.validation_target_value = workload.test_target_value = 0.0
        return honest_init(workload, params, model_state, hparams, rng)
    submission.init_optimizer_state = init_optimizer_state
    result = run(workload, submission, backend)
    honest_backend = FakeClockBackend()
    honest = run(ScriptedWorkload(honest_backend, budget=20.0, eval_period=5.0, target=2.0),
                 make_submission(honest_backend), honest_backend)
    assert workload.max_allowed_runtime_sec == 1e9  # the patch happened
    assert result.global_step == honest.global_step and result.accumulated_submission_time < 25
    assert [s for s, _ in result.eval_results] == [s for s, _ in honest.eval_results]
    assert not result.reached_validation
