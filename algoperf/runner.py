"""Run a submission on a workload until it reaches the target: AlgoPerf's timing rules.

One trial, on one screen (``train_once``):

    untimed:  input queue, model init, init_optimizer_state (and resume from a checkpoint)
    loop:     data_selection + update_params                    <- on the clock
              every eval_period_time_sec since the last eval (on a step grid, at steps
              1, k, 2k, ... where the workload sets eval_period_steps = k: the tiny tier):
                prepare_for_eval                                 <- on the clock
                budget check: accumulated submission time < budget, else stop, no eval
                eval on train/validation/test, log, checkpoint   <- off the clock
    stop:     budget spent | validation and test targets reached | TrainingCompleteError
              | --max_global_steps

The clock waits for the device (``backend.clock``) and is the max over processes under DDP;
it reads the workload's clock (``algoperf.clocks``: wall time, AlgoPerf's rule, or the tiny
tier's process CPU time) unless the experiment chose another.
Budget, eval period and targets are read once (``Limits``) before any submission code runs, so
a submission that patches its workload object cannot move them; every call into the
submission runs inside ``eval_guard.submission_code()``, so its reads of held-out data are
recorded. ``run_trial_safely`` records a failing trial (with the submission's own line that
raised) and lets the next one run.
"""
import dataclasses
import errno
import inspect
import os
import traceback
from types import MappingProxyType, ModuleType
from typing import Any, Callable, Dict, List, Optional, Tuple

from absl import logging

from algoperf import benchmark_rules, clocks, eval_guard, logger_utils, random_utils, spec
from algoperf.submission_loader import SubmissionError, describe_failure

STOP_MAX_STEPS = "max_global_steps"
# Write errors that end the whole run: full disk or quota, file too large, read-only folder.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def _positive_int_or_none(value) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"eval_period_steps={value!r}: expected a positive integer or None")
    return int(value)


class TrialFailed(RuntimeError):
    """A trial that cannot go on (NaN loss, broken API); recorded, the next trial runs."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a trial is held to, read from the workload before any submission code runs."""
    max_allowed_runtime_sec: float
    budget_sec: float            # x benchmark_rules.SELF_TUNING_BUDGET_FACTOR under self-tuning
    eval_period_time_sec: float
    target_metric_name: str
    validation_target_value: float
    test_target_value: float
    clock: str = clocks.WALL     # what every logged time is measured on (algoperf.clocks)
    eval_period_steps: Optional[int] = None   # a step grid instead of the time rule

    @classmethod
    def of(cls, workload, self_tuning: bool, clock: Optional[str] = None) -> "Limits":
        """``clock``: overrides the workload's (``workload.clock``; a workload that names
        none, such as a user's own AlgoPerf workload class, is on AlgoPerf's wall time)."""
        runtime = float(workload.max_allowed_runtime_sec)
        clock = clock or getattr(workload, "clock", clocks.WALL)
        clocks.reader(clock)  # an unknown name fails here, before anything runs
        return cls(max_allowed_runtime_sec=runtime, clock=clock,
                   budget_sec=benchmark_rules.budget_sec(runtime, self_tuning),
                   eval_period_time_sec=float(workload.eval_period_time_sec),
                   target_metric_name=str(workload.target_metric_name),
                   validation_target_value=float(workload.validation_target_value),
                   test_target_value=float(workload.test_target_value),
                   eval_period_steps=_positive_int_or_none(
                       getattr(workload, "eval_period_steps", None)))

    def eval_due(self, global_step: int, since_last_eval: float) -> bool:
        """Whether the step just taken is an eval point. AlgoPerf's rule: an
        ``eval_period_time_sec`` of the clock has passed since the last one (the first step
        is one). On a step grid: steps 1, k, 2k, ..., the same steps in every run."""
        if self.eval_period_steps:
            return global_step == 1 or global_step % self.eval_period_steps == 0
        return since_last_eval >= self.eval_period_time_sec

    def reached_validation(self, result: Dict[str, float]) -> bool:
        return benchmark_rules.reached(result.get(f"validation/{self.target_metric_name}"),
                                       self.validation_target_value,
                                       self.target_metric_name)

    def reached_test(self, result: Dict[str, float]) -> bool:
        return benchmark_rules.reached(result.get(f"test/{self.target_metric_name}"),
                                       self.test_target_value, self.target_metric_name)


# --- the submission ------------------------------------------------------------------------
def global_batch_size_for(submission: ModuleType, workload) -> int:
    """``get_batch_size(name)``; a variant the submission does not know gets its base's size."""
    with eval_guard.submission_code():
        try:
            return int(submission.get_batch_size(workload.name))
        except ValueError:
            if not workload.is_variant:
                raise
            return int(submission.get_batch_size(workload.base_workload_name))


def _accepts_train_state(update_params: Callable) -> bool:
    return "train_state" in inspect.signature(update_params).parameters


class _CountingQueue:
    """Counts the batches taken from the input queue so a resumed run skips exactly those."""

    def __init__(self, queue):
        self._queue = queue
        self.taken = 0

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self._queue)
        self.taken += 1
        return batch


# --- one trial ------------------------------------------------------------------------------
@dataclasses.dataclass
class TrialResult:
    trial_dir: Optional[str]
    global_step: int = 0
    accumulated_submission_time: float = 0.0
    reached_validation: bool = False
    reached_test: bool = False
    time_to_target: Optional[float] = None
    step_to_target: Optional[int] = None   # the step of the first eval reaching validation
    failed: bool = False
    reason: str = ""
    stop_reason: str = ""        # what ended the loop (see _stop_reason)
    # Paths inside the submission's state its checkpoints could not hold (with why).
    checkpoint_left_out: List[str] = dataclasses.field(default_factory=list)
    eval_results: List[Tuple[int, Dict[str, float]]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class TrialConfig:
    data_dir: str
    imagenet_v2_data_dir: Optional[str] = None
    max_global_steps: Optional[int] = None
    self_tuning: bool = False
    save_checkpoints: bool = True
    resume: bool = False
    trial_label: str = "trial"
    # Called with (global_step, eval row) after each logged eval, off the clock (tracking).
    on_eval: Optional[Callable[[int, Dict[str, float]], None]] = None
    # Fixed by the experiment before the submission was imported; else read at the start.
    limits: Optional[Limits] = None


def train_once(workload, submission: ModuleType, backend, hyperparameters, rng,
               trial_dir: Optional[str], config: TrialConfig) -> TrialResult:
    """Train one trial. ``trial_dir`` None: log nothing (tests, benchmarks)."""
    limits = config.limits or Limits.of(workload, config.self_tuning)
    backend.read_time = clocks.reader(limits.clock)
    chief = backend.is_chief
    global_batch_size = global_batch_size_for(submission, workload)
    if global_batch_size % backend.world_size:
        raise SubmissionError(f"get_batch_size({workload.name!r}) = {global_batch_size} is not "
                              f"divisible by the {backend.world_size} processes")
    # ---- untimed set-up ----
    data_rng, opt_init_rng, model_init_rng, rng = random_utils.split(rng, 4)
    input_queue = _CountingQueue(workload._build_input_queue(
        data_rng, "train", data_dir=config.data_dir, global_batch_size=global_batch_size))
    model_params, model_state = workload.init_model_fn(model_init_rng)
    with eval_guard.submission_code():
        optimizer_state = submission.init_optimizer_state(
            workload, model_params, model_state, hyperparameters, opt_init_rng)
    prepare_for_eval = getattr(submission, "prepare_for_eval", None)
    pass_train_state = _accepts_train_state(submission.update_params)

    logger = logger_utils.MetricsLogger(trial_dir if chief else None)
    workload.attach_metrics_logger(logger if chief else None)
    train_state = {"validation_goal_reached": False, "test_goal_reached": False,
                   "is_time_remaining": True,
                   # As in AlgoPerf, the first eval comes right after the first step.
                   "last_eval_time": float("-inf"),
                   "training_complete": False, "accumulated_submission_time": 0.0,
                   "accumulated_eval_time": 0.0, "accumulated_logging_time": 0.0,
                   "last_step_end_time": None}
    global_step, preemption_count, prior_duration = 0, 0, 0.0
    eval_results: List[Tuple[int, Dict[str, float]]] = []
    checkpoint_path = os.path.join(trial_dir, backend.checkpoint_name) if trial_dir else None
    reported_unsaved: Dict[str, str] = {}

    if config.resume and checkpoint_path and os.path.exists(checkpoint_path):
        model_params, model_state, optimizer_state, saved = backend.load_checkpoint(
            checkpoint_path, model_params, model_state, optimizer_state)
        train_state.update(saved["train_state"])
        global_step, eval_results = saved["global_step"], saved["eval_results"]
        preemption_count, prior_duration = saved["preemption_count"] + 1, saved["total_duration"]
        logger.eval_rows, logger.train_rows = saved["eval_rows"], saved["train_rows"]
        logger.flush()  # Drops any eval row logged after this checkpoint: nothing twice.
        _skip(input_queue, saved["batches_taken"])
        logging.info("%s: resumed at step %d (submission time %.1fs, preemption %d)",
                     config.trial_label, global_step, train_state["accumulated_submission_time"],
                     preemption_count)
        if (saved.get("stop_reason") == STOP_MAX_STEPS and not _at_max_steps(global_step, config)
                and train_state["is_time_remaining"]):
            train_state["training_complete"] = False  # resumed with a larger --max_global_steps
        if train_state["training_complete"] or not train_state["is_time_remaining"] or (
                train_state["validation_goal_reached"] and train_state["test_goal_reached"]):
            return _result(trial_dir, limits, global_step, train_state, eval_results)

    global_start_time = backend.clock()
    train_state["last_step_end_time"] = global_start_time
    if global_step > 0:
        train_state["last_eval_time"] = global_start_time
    goals_reached = False

    def save(total_duration: float, stop_reason: str = "") -> None:
        """Everything a resumed run needs to continue as if never stopped.

        Runs on rank 0 only, so it must not touch collectives (``backend.clock`` is one).
        """
        if checkpoint_path is None:
            return
        unsaved = backend.save_checkpoint(
            checkpoint_path, model_params, model_state, optimizer_state, {
                "train_state": {**train_state, "last_step_end_time": None},
                "global_step": global_step, "eval_results": eval_results,
                "preemption_count": preemption_count,
                "total_duration": total_duration, "stop_reason": stop_reason,
                "eval_rows": logger.eval_rows, "train_rows": logger.train_rows,
                "batches_taken": input_queue.taken})
        for path, why in unsaved or ():
            if path not in reported_unsaved:
                reported_unsaved[path] = why
                logging.warning("%s: checkpoint leaves out %s: %s; a resumed trial gets what "
                                "init_optimizer_state gives for it", config.trial_label, path,
                                why)

    # ---- the loop ----
    while (train_state["is_time_remaining"] and not goals_reached
           and not train_state["training_complete"]):
        data_select_rng, update_rng, prep_eval_rng, eval_rng = random_utils.fold_in_and_split(
            rng, global_step, 4)
        with eval_guard.submission_code():
            batch = submission.data_selection(workload, input_queue, optimizer_state,
                                              model_params, model_state, hyperparameters,
                                              global_step, data_select_rng)
            try:
                kwargs = {"train_state": MappingProxyType(train_state)} if pass_train_state \
                    else {}
                returned = submission.update_params(
                    workload=workload, current_param_container=model_params,
                    current_params_types=workload.model_params_types, model_state=model_state,
                    hyperparameters=hyperparameters, batch=batch, loss_type=workload.loss_type,
                    optimizer_state=optimizer_state, eval_results=eval_results,
                    global_step=global_step, rng=update_rng, **kwargs)
                optimizer_state, model_params, model_state = _unpack_update(returned,
                                                                            "update_params")
            except spec.TrainingCompleteError:
                train_state["training_complete"] = True
        global_step += 1
        if _at_max_steps(global_step, config):
            train_state["training_complete"] = True
        train_step_end_time = backend.clock(model_params, optimizer_state, model_state)
        train_state["accumulated_submission_time"] += (
            train_step_end_time - train_state["last_step_end_time"])

        if not (limits.eval_due(global_step, train_step_end_time - train_state["last_eval_time"])
                or train_state["training_complete"]):
            train_state["last_step_end_time"] = train_step_end_time
            continue

        # ---- eval point ----
        if prepare_for_eval is not None:
            start = backend.clock()
            with eval_guard.submission_code():
                optimizer_state, model_params, model_state = _unpack_update(prepare_for_eval(
                    workload, model_params, workload.model_params_types, model_state,
                    hyperparameters, workload.loss_type, optimizer_state, eval_results,
                    global_step, prep_eval_rng), "prepare_for_eval")
            train_state["accumulated_submission_time"] += backend.clock(
                model_params, optimizer_state, model_state) - start
        train_state["is_time_remaining"] = (train_state["accumulated_submission_time"]
                                            < limits.budget_sec)
        if train_state["is_time_remaining"]:
            del batch
            eval_start = backend.clock()
            latest = workload.eval_model(workload.eval_batch_size, model_params, model_state,
                                         eval_rng, config.data_dir, config.imagenet_v2_data_dir,
                                         global_step)
            train_state["validation_goal_reached"] |= limits.reached_validation(latest)
            train_state["test_goal_reached"] |= limits.reached_test(latest)
            goals_reached = (train_state["validation_goal_reached"]
                             and train_state["test_goal_reached"])
            eval_end = backend.clock()
            train_state["accumulated_eval_time"] += eval_end - eval_start
            latest.update(
                score=train_state["accumulated_submission_time"],
                total_duration=prior_duration + eval_end - global_start_time,
                accumulated_submission_time=train_state["accumulated_submission_time"],
                accumulated_eval_time=train_state["accumulated_eval_time"],
                accumulated_logging_time=train_state["accumulated_logging_time"])
            eval_results.append((global_step, latest))

            logging_start = backend.clock()
            if chief:
                logger.append_scalar_metrics(latest, global_step, preemption_count,
                                             is_eval=True)
                if config.on_eval is not None:
                    config.on_eval(global_step, logger.eval_rows[-1])
                _log_progress(config.trial_label, limits, global_step, latest)
            _check_finite_loss(latest, global_step)
            if config.save_checkpoints and chief:
                save(latest["total_duration"])
            backend.barrier()
            logging_end = backend.clock()
            train_state["accumulated_logging_time"] += logging_end - logging_start
            # The next period starts once this eval point's logs and checkpoint are written
            # (as AlgoPerf's earlier runner did): a checkpoint that takes longer than a short
            # eval period (the tiny tier's) must not make every step an eval.
            train_state["last_eval_time"] = logging_end
        train_state["last_step_end_time"] = backend.clock()

    end_time = backend.clock()
    stop_reason = _stop_reason(train_state, global_step, config)
    if chief:
        logger.flush()
        if config.save_checkpoints:
            train_state["training_complete"] = True  # A later --resume_last_run skips it.
            save(prior_duration + end_time - global_start_time, stop_reason)
    result = _result(trial_dir, limits, global_step, train_state, eval_results, stop_reason)
    result.checkpoint_left_out = [f"{path}: {why}" for path, why in reported_unsaved.items()]
    return result


def _at_max_steps(global_step: int, config: TrialConfig) -> bool:
    return config.max_global_steps is not None and global_step >= config.max_global_steps


def _stop_reason(train_state: Dict[str, Any], global_step: int, config: TrialConfig) -> str:
    if train_state["validation_goal_reached"] and train_state["test_goal_reached"]:
        return "targets reached"
    if not train_state["is_time_remaining"]:
        return "budget spent"
    if _at_max_steps(global_step, config):
        return STOP_MAX_STEPS
    return "training complete"  # the submission raised TrainingCompleteError


def _unpack_update(returned: Any, fn_name: str):
    if not (isinstance(returned, tuple) and len(returned) == 3):
        raise TrialFailed(f"{fn_name} must return (optimizer_state, params, model_state), "
                          f"got {type(returned).__name__}"
                          + (f" of length {len(returned)}" if isinstance(returned, tuple) else ""))
    return returned


def _skip(queue: _CountingQueue, count: int) -> None:
    inner = queue._queue
    if hasattr(inner, "skip"):
        inner.skip(count)
        queue.taken += count
        return
    for _ in range(count):
        next(queue)


def _check_finite_loss(eval_result: Dict[str, float], global_step: int) -> None:
    for key in ("train/loss", "validation/loss"):
        if key in eval_result and not logger_utils.is_finite_number(eval_result[key]):
            raise TrialFailed(f"{key} is {eval_result[key]} at step {global_step} (diverged)")


def _log_progress(label: str, limits: Limits, step: int, result: Dict[str, float]) -> None:
    metric = f"validation/{limits.target_metric_name}"
    logging.info("%s | step %d | submission time %.1fs | %s %.4f (target %.4f) | "
                 "budget left %.1fs", label, step, result["score"], metric,
                 result.get(metric, float("nan")), limits.validation_target_value,
                 max(limits.budget_sec - result["score"], 0.0))


def _result(trial_dir, limits: Limits, global_step, train_state, eval_results,
            stop_reason: str = "") -> TrialResult:
    step_to_target, at_target = next(((step, result) for step, result in eval_results
                                      if limits.reached_validation(result)), (None, None))
    return TrialResult(trial_dir=trial_dir, global_step=global_step,
                       accumulated_submission_time=train_state["accumulated_submission_time"],
                       reached_validation=train_state["validation_goal_reached"],
                       reached_test=train_state["test_goal_reached"],
                       time_to_target=None if at_target is None else at_target["score"],
                       step_to_target=step_to_target, stop_reason=stop_reason,
                       eval_results=eval_results)


# --- a study: its tuning trials -------------------------------------------------------------
def run_trial_safely(run: Callable[[], TrialResult], trial_dir: Optional[str],
                     label: str, submission_folder: Optional[str] = None,
                     explain: Optional[Callable[[BaseException], str]] = None) -> TrialResult:
    """Run a trial; if it raises, record why (``failed.json`` + console) and return.

    The reason names the innermost line of the submission's own code (under
    ``submission_folder``) that the error went through; ``explain(error)``, when it says
    something (the backend's: a JAX layout the submission is not written for), comes first."""
    try:
        return run()
    except (KeyboardInterrupt, SystemExit, SubmissionError):
        raise
    except Exception as error:  # noqa: BLE001 - any trial failure is recorded, not fatal
        reason = describe_failure(error, submission_folder)
        cause = explain(error) if explain is not None else ""
        if cause:
            reason = f"{cause} (first error: {_shortened(reason)})"
        details = traceback.format_exc()
        logging.error("%s FAILED: %s", label, reason)
        if trial_dir is not None:
            try:
                logger_utils.record_failure(trial_dir, reason, details)
            except OSError as write_error:
                logging.error("%s: could not record the failure in %s: %s", label, trial_dir,
                              write_error)
        if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
            raise  # the logs cannot be written: no later trial could be either
        return TrialResult(trial_dir=trial_dir, failed=True, reason=reason)


def _shortened(text: str, head: int = 200, tail: int = 160) -> str:
    """XLA's shape errors run to pages: the start and the end (where the submission's line is
    named); the full traceback is in failed.json's details."""
    text = " ".join(text.split())
    return text if len(text) <= head + tail else f"{text[:head]} ... {text[-tail:]}"


def trial_seed(rng_seed: int, study: int, trial: int) -> random_utils.Key:
    return random_utils.key_for_trial(rng_seed, study, trial)

