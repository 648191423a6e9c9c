"""An experiment: every study and tuning trial of one submission on one workload.

    <experiment_dir>/<experiment_name>/[study_<j>/]<workload>_<framework>/trial_<k>/
        flags_<n>.json, meta_data_<n>.json   (n: 0 for the first start, +1 per resume)

(``study_<j>`` only when ``num_studies > 1``, as AlgoPerf's official runs name them.)
Trial k of study j gets the seed ``fold_in(fold_in(PRNGKey(rng_seed), j), k)``; external
tuning draws hyperparameter point k from the search space with a seed derived from the same
``rng_seed`` and the study, so every study explores its own points.

One writer per trial: the process that trains (or, with ``--overwrite``, deletes) a trial
folder holds its lock (``algoperf.folder_lock``) until the experiment ends; a second writer
gets ``FolderInUseError`` naming the owner. ``--resume_last_run``:

- the seed is the one in the experiment's own ``flags_0.json`` (a different ``--rng_seed`` is
  an error);
- a finished trial (``complete.json``, written when its loop ends) is left as it is, checkpoint
  or not; one stopped by ``--max_global_steps`` continues when given a larger one;
- an unfinished trial continues from its checkpoint, or, without one, restarts from step 0
  after moving its logs to ``restarted_<n>/`` and saying so.
"""
import dataclasses
import json
import os
import secrets
import shutil
from typing import Callable, Dict, List, Optional, Tuple

from absl import logging

from algoperf import (eval_guard, folder_lock, logger_utils, random_utils, runner, search_space,
                      submission_loader)
from algoperf.backends import get_backend

RULESETS = ("external", "self")


class ExperimentError(ValueError):
    """A bad flag or folder, reported as one line before any trial runs."""


@dataclasses.dataclass
class ExperimentConfig:
    workload: str
    submission_path: str
    experiment_dir: Optional[str]
    experiment_name: str = "experiment"
    framework: str = "pytorch"
    jax_layout: str = "auto"  # JAX only: algoperf.backends.jax_layout
    clock: Optional[str] = None  # algoperf.clocks; None: the workload's
    tuning_ruleset: str = "external"
    tuning_search_space: Optional[str] = None
    num_tuning_trials: int = 1
    num_studies: int = 1
    rng_seed: Optional[int] = None
    data_dir: Optional[str] = None
    imagenet_v2_data_dir: Optional[str] = None
    max_global_steps: Optional[int] = None
    resume_last_run: bool = False
    overwrite: bool = False
    save_checkpoints: bool = True
    hparam_start_index: Optional[int] = None
    hparam_end_index: Optional[int] = None
    flags: Dict[str, object] = dataclasses.field(default_factory=dict)


def workload_dir(config: ExperimentConfig, study: int) -> str:
    parts = [config.experiment_dir, config.experiment_name]
    if config.num_studies > 1:
        parts.append(f"study_{study}")
    parts.append(f"{config.workload}_{config.framework}")
    return os.path.join(*parts)


def _check(config: ExperimentConfig) -> None:
    if config.tuning_ruleset not in RULESETS:
        raise ExperimentError(f"--tuning_ruleset={config.tuning_ruleset!r}: expected one of "
                              f"{', '.join(RULESETS)}")
    if config.tuning_ruleset == "external" and not config.tuning_search_space:
        raise ExperimentError("--tuning_search_space is required with --tuning_ruleset=external")
    if config.num_tuning_trials < 1 or config.num_studies < 1:
        raise ExperimentError("--num_tuning_trials and --num_studies must be >= 1")
    if config.resume_last_run and config.overwrite:
        raise ExperimentError("--resume_last_run and --overwrite contradict each other")
    if config.max_global_steps is not None and config.max_global_steps < 1:
        raise ExperimentError(f"--max_global_steps={config.max_global_steps}: must be >= 1")
    _trial_range(config)
    if config.experiment_dir and os.path.exists(config.experiment_dir) and not os.path.isdir(
            config.experiment_dir):
        raise ExperimentError(f"--experiment_dir={config.experiment_dir} is a file, not a folder")


def _trial_range(config: ExperimentConfig) -> range:
    """The 0-based trial indices to run, from --hparam_start_index/--hparam_end_index."""
    n = config.num_tuning_trials
    start = 0 if config.hparam_start_index is None else config.hparam_start_index
    end = n if config.hparam_end_index is None else config.hparam_end_index
    if not 0 <= start < n:
        raise ExperimentError(f"--hparam_start_index={start}: must be in [0, {n - 1}] with "
                              f"--num_tuning_trials={n}")
    if not 1 <= end <= n:
        raise ExperimentError(f"--hparam_end_index={end}: must be in [1, {n}] with "
                              f"--num_tuning_trials={n}")
    if start >= end:
        raise ExperimentError(f"--hparam_start_index={start} must be smaller than "
                              f"--hparam_end_index={end}")
    return range(start, end)


def _trial_dirs(path: str) -> List[str]:
    if not os.path.isdir(path):
        return []
    return [os.path.join(path, d) for d in sorted(os.listdir(path)) if d.startswith("trial_")]


def _prepare_dir(path: str, config: ExperimentConfig) -> None:
    """Refuse to mix a new run into old logs unless told to resume or overwrite; delete only
    folders no live process is writing (each one's lock is taken first)."""
    trials = _trial_dirs(path)
    if trials and not (config.resume_last_run or config.overwrite):
        raise ExperimentError(f"{path} already holds trials: pass --resume_last_run to continue "
                              "them or --overwrite to delete them")
    if trials and config.overwrite:
        for trial_dir in trials:
            folder_lock.acquire(trial_dir)
        shutil.rmtree(path)
        for trial_dir in trials:
            folder_lock.release(trial_dir)
    os.makedirs(path, exist_ok=True)


def _logged(config: ExperimentConfig, filename: str, read: Callable[[dict], object]
            ) -> Optional[Tuple[object, str]]:
    """(value, the file it was read from) of the first trial of an experiment being resumed
    whose ``filename`` (flags_0.json, meta_data_0.json) gives one (``read``: None if not)."""
    if not (config.resume_last_run and config.experiment_dir):
        return None
    for study in range(config.num_studies):
        for trial_dir in _trial_dirs(workload_dir(config, study)):
            path = os.path.join(trial_dir, filename)
            try:
                with open(path) as f:
                    value = read(json.load(f))
            except (OSError, ValueError, AttributeError):
                continue
            if value is not None:
                return value, path
    return None


def _seed(config: ExperimentConfig) -> int:
    """A resumed experiment keeps the seed it started with; a different --rng_seed is an
    error (the data stream and the next trials' points would silently change)."""
    logged = _logged(config, "flags_0.json",
                     lambda flags: flags.get("rng_seed") if isinstance(
                         flags.get("rng_seed"), int) else None)
    if logged is None:
        return config.rng_seed if config.rng_seed is not None else secrets.randbits(31)
    seed, path = logged
    if config.rng_seed is not None and config.rng_seed != seed:
        raise ExperimentError(f"--rng_seed={config.rng_seed} conflicts with rng_seed {seed} "
                              f"that this experiment started with ({path}); drop --rng_seed "
                              "to resume it")
    return seed


def _check_clock(config: ExperimentConfig, limits: runner.Limits) -> None:
    """A resumed experiment keeps the clock its logged times are in."""
    logged = _logged(config, "meta_data_0.json",
                     lambda meta: (meta.get("limits") or {}).get("clock"))
    if logged is not None and logged[0] != limits.clock:
        raise ExperimentError(f"--clock={limits.clock} conflicts with the clock "
                              f"{logged[0]!r} that this experiment's times are in "
                              f"({logged[1]}); resume it with --clock={logged[0]}")


def _draw_points(config: ExperimentConfig, rng_seed: int, study: int):
    if config.tuning_ruleset == "self":
        return [None] * config.num_tuning_trials
    space = search_space.load_search_space(config.tuning_search_space)
    # Trials are numbered from 1, so the study's "trial 0" key is free for the draw.
    seed = random_utils.to_int(random_utils.key_for_trial(rng_seed, study, 0))
    return search_space.draw_hyperparameters(space, config.num_tuning_trials, seed=seed)


def run_experiment(config: ExperimentConfig, workload=None) -> List[runner.TrialResult]:
    """Run all studies and trials; failed trials are recorded and the rest go on."""
    from workloads import registry  # Model code is only needed to run, not to score.

    _check(config)
    backend = get_backend(config.framework)
    backend.init()
    workload = workload or registry.get_workload(config.workload, config.framework, backend)
    # Fixed before the submission's module runs: it cannot move them by patching the workload.
    limits = runner.Limits.of(workload, config.tuning_ruleset == "self", config.clock)
    _check_clock(config, limits)
    submission = submission_loader.load_submission(config.submission_path)
    if config.framework == "jax":
        layout = backend.use_layout_for(config.jax_layout, submission_loader.source_files())
        logging.info("%s: JAX %s layout", config.submission_path, layout)
    submission_folder = os.path.dirname(os.path.abspath(config.submission_path))
    data_dir = registry.resolve_data_dir(workload, config.data_dir)
    registry.check_data(workload, data_dir)
    eval_guard.protect([folder for root in (data_dir, config.imagenet_v2_data_dir) if root
                        for folder in workload.held_out_folders(root)])
    rng_seed = _seed(config)
    logging.info("%s on %s (%s), rng_seed %d", config.submission_path, config.workload,
                 config.framework, rng_seed)

    metadata = {**logger_utils.collect_metadata(rng_seed, backend.info()),
                "limits": dataclasses.asdict(limits)}
    results = []
    locked: List[str] = []
    try:
        for study in range(config.num_studies):
            points = _draw_points(config, rng_seed, study)
            log_dir = workload_dir(config, study) if config.experiment_dir else None
            if log_dir and backend.is_chief:
                _prepare_dir(log_dir, config)
            backend.barrier()
            for index in _trial_range(config):
                trial = index + 1  # AlgoPerf numbers trials from 1.
                label = f"study {study} trial {trial}"
                trial_dir = os.path.join(log_dir, f"trial_{trial}") if log_dir else None
                if trial_dir and backend.is_chief:
                    if not folder_lock.is_held_here(trial_dir):
                        folder_lock.acquire(trial_dir)
                        locked.append(trial_dir)
                finished = _finished(trial_dir, config, backend.checkpoint_name)
                if finished is not None:
                    logging.info("%s: already finished (%s); nothing to resume", label,
                                 finished.stop_reason)
                    results.append(finished)
                    continue
                result = _run_trial(config, backend, workload, submission, submission_folder,
                                    limits, data_dir, rng_seed, study, trial, label, trial_dir,
                                    points[index], metadata)
                results.append(result)
                _log_summary(label, limits, result)
    finally:
        for trial_dir in locked:
            folder_lock.release(trial_dir)
    return results


def _run_trial(config, backend, workload, submission, submission_folder, limits, data_dir,
               rng_seed, study, trial, label, trial_dir, point, metadata) -> runner.TrialResult:
    hyperparameters = _resumed_hyperparameters(trial_dir, config) or point
    meta_path = None
    if trial_dir and backend.is_chief:
        _clear_stale_failure(trial_dir, config)
        _set_aside_unresumable_logs(trial_dir, config, label, backend.checkpoint_name)
        n = logger_utils.next_run_index(trial_dir)  # one pair per (re)start
        logger_utils.write_json(os.path.join(trial_dir, f"flags_{n}.json"),
                                {**config.flags, "rng_seed": rng_seed})
        meta_path = os.path.join(trial_dir, f"meta_data_{n}.json")
        logger_utils.write_json(meta_path, {**metadata, "trial": trial, "study": study})
        logger_utils.write_json(
            os.path.join(trial_dir, logger_utils.HPARAMS_FILE),
            search_space.hyperparameters_to_dict(hyperparameters)
            if hyperparameters is not None else {})
    trackers = _trackers(config, backend, study, trial, trial_dir, hyperparameters,
                         {**metadata, "trial": trial, "study": study})
    trial_config = runner.TrialConfig(
        data_dir=data_dir, imagenet_v2_data_dir=config.imagenet_v2_data_dir,
        max_global_steps=config.max_global_steps,
        self_tuning=config.tuning_ruleset == "self",
        save_checkpoints=config.save_checkpoints, resume=config.resume_last_run,
        trial_label=label, on_eval=_fan_out(trackers), limits=limits)
    eval_guard.start_trial(submission_folder, label)
    result = runner.run_trial_safely(
        lambda: runner.train_once(workload, submission, backend, hyperparameters,
                                  runner.trial_seed(rng_seed, study, trial), trial_dir,
                                  trial_config),
        trial_dir, label, submission_folder, explain=backend.explain_failure)
    for tracker in trackers:
        tracker.finish(result)
    if meta_path is not None:
        _record_outcome(trial_dir, meta_path, result)
    return result


def _record_outcome(trial_dir: str, meta_path: str, result: runner.TrialResult) -> None:
    """The completion marker of a finished trial, and what the eval guard saw, in the logs."""
    if eval_guard.access_count():
        with open(meta_path) as f:
            meta = json.load(f)
        meta.update(eval_data_accessed_by_submission=True,
                    eval_data_access_count=eval_guard.access_count(),
                    eval_data_accesses=eval_guard.accesses())
        logger_utils.write_json(meta_path, meta)
    if not result.failed:
        logger_utils.write_json(os.path.join(trial_dir, logger_utils.COMPLETE_FILE), {
            "stop_reason": result.stop_reason, "global_step": result.global_step,
            "accumulated_submission_time": result.accumulated_submission_time,
            "reached_validation": result.reached_validation,
            "reached_test": result.reached_test, "time_to_target": result.time_to_target})


def _finished(trial_dir: Optional[str], config: ExperimentConfig, checkpoint_name: str
              ) -> Optional[runner.TrialResult]:
    """A resumed trial that has already finished, as its result (None: run it).

    A trial that stopped at --max_global_steps continues when resumed with a larger one."""
    path = os.path.join(trial_dir, logger_utils.COMPLETE_FILE) if trial_dir else ""
    if not (config.resume_last_run and os.path.exists(path)):
        return None
    with open(path) as f:
        record = json.load(f)
    can_continue = (record.get("stop_reason") == runner.STOP_MAX_STEPS
                    and os.path.exists(os.path.join(trial_dir, checkpoint_name))
                    and (config.max_global_steps is None
                         or config.max_global_steps > record.get("global_step", 0)))
    if can_continue:
        os.remove(path)
        return None
    return runner.TrialResult(
        trial_dir=trial_dir, global_step=record.get("global_step", 0),
        accumulated_submission_time=record.get("accumulated_submission_time", 0.0),
        reached_validation=record.get("reached_validation", False),
        reached_test=record.get("reached_test", False),
        time_to_target=record.get("time_to_target"), stop_reason=record.get("stop_reason", ""))


def _set_aside_unresumable_logs(trial_dir: str, config: ExperimentConfig, label: str,
                                checkpoint_name: str) -> None:
    """An unfinished trial without a checkpoint restarts from step 0; its logs are moved to
    ``restarted_<n>/`` first, never overwritten."""
    if not config.resume_last_run or os.path.exists(os.path.join(trial_dir, checkpoint_name)):
        return
    logs = [f for f in (logger_utils.EVAL_FILE, logger_utils.MEASUREMENTS_FILE)
            if os.path.exists(os.path.join(trial_dir, f))]
    if not logs:
        return
    n = 0
    while os.path.exists(os.path.join(trial_dir, f"restarted_{n}")):
        n += 1
    aside = os.path.join(trial_dir, f"restarted_{n}")
    os.makedirs(aside)
    for name in logs:
        os.replace(os.path.join(trial_dir, name), os.path.join(aside, name))
    logging.warning("%s: no checkpoint to resume from (started with --nosave_checkpoints, or "
                    "stopped before its first checkpoint): restarting it from step 0; its "
                    "earlier logs are kept in %s", label, aside)


def _trackers(config: ExperimentConfig, backend, study: int, trial: int,
              trial_dir: Optional[str], hyperparameters, metadata) -> list:
    """W&B / TensorBoard writers for this trial as the flags ask (chief process only)."""
    from algoperf import tracking
    if not backend.is_chief:
        return []
    return tracking.trial_trackers(
        config.flags, trial_dir, workload=config.workload,
        submission=os.path.basename(os.path.dirname(os.path.abspath(config.submission_path))),
        experiment_name=config.experiment_name, study=study, num_studies=config.num_studies,
        trial=trial, metadata=metadata,
        hyperparameters=search_space.hyperparameters_to_dict(hyperparameters)
        if hyperparameters is not None else None)


def _fan_out(trackers: list):
    """One on_eval callback that hands each eval row to every tracker (None: no tracker)."""
    if not trackers:
        return None
    return lambda global_step, row: [t.log_eval(global_step, row) for t in trackers]


def _resumed_hyperparameters(trial_dir: Optional[str], config: ExperimentConfig):
    """A resumed trial continues with the point it was started with, read back from disk."""
    path = os.path.join(trial_dir, logger_utils.HPARAMS_FILE) if trial_dir else ""
    if not (config.resume_last_run and config.tuning_ruleset == "external"
            and os.path.exists(path)):
        return None
    with open(path) as f:
        return search_space.hyperparameters_from_dict(json.load(f), path=path)


def _clear_stale_failure(trial_dir: str, config: ExperimentConfig) -> None:
    failed = os.path.join(trial_dir, logger_utils.FAILED_FILE)
    if config.resume_last_run and os.path.exists(failed):
        os.remove(failed)


def _log_summary(label: str, limits: runner.Limits, result: runner.TrialResult) -> None:
    if result.failed:
        logging.info("%s: failed (%s)", label, result.reason)
    elif result.time_to_target is not None:
        logging.info("%s: reached validation target %.4f at %.2fs submission time "
                     "(%d steps)", label, limits.validation_target_value,
                     result.time_to_target, result.global_step)
    else:
        logging.info("%s: did not reach the target (%d steps, %.2fs submission time)", label,
                     result.global_step, result.accumulated_submission_time)

