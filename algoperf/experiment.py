"""An experiment: every study and tuning trial of one submission on one workload.

    <experiment_dir>/<experiment_name>/[study_<j>/]<workload>_<framework>/trial_<k>/
        flags_<n>.json, meta_data_<n>.json   (n: 0 for the first start, +1 per resume)

(``study_<j>`` only when ``num_studies > 1``, as AlgoPerf's official runs name them.)
Trial k of study j gets the seed ``fold_in(fold_in(PRNGKey(rng_seed), j), k)``; external
tuning draws hyperparameter point k from the search space with a seed derived from the same
``rng_seed`` and the study, so every study explores its own points.
"""
import dataclasses
import json
import os
import secrets
import shutil
from typing import Dict, List, Optional

from absl import logging

from algoperf import logger_utils, random_utils, runner, search_space
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


def _prepare_dir(path: str, config: ExperimentConfig) -> None:
    """Refuse to mix a new run into old logs unless told to resume or overwrite."""
    has_trials = os.path.isdir(path) and any(d.startswith("trial_") for d in os.listdir(path))
    if has_trials and not (config.resume_last_run or config.overwrite):
        raise ExperimentError(f"{path} already holds trials: pass --resume_last_run to continue "
                              "them or --overwrite to delete them")
    if has_trials and config.overwrite:
        shutil.rmtree(path)
    os.makedirs(path, exist_ok=True)


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
    submission = runner.load_submission(config.submission_path)
    workload = workload or registry.get_workload(config.workload, config.framework)
    data_dir = registry.resolve_data_dir(workload, config.data_dir)
    registry.check_data(workload, data_dir)
    rng_seed = config.rng_seed if config.rng_seed is not None else secrets.randbits(31)
    logging.info("%s on %s (%s), rng_seed %d", config.submission_path, config.workload,
                 config.framework, rng_seed)

    metadata = logger_utils.collect_metadata(rng_seed, backend.info())
    start = config.hparam_start_index or 0
    end = config.hparam_end_index or config.num_tuning_trials
    results = []
    for study in range(config.num_studies):
        points = _draw_points(config, rng_seed, study)
        log_dir = workload_dir(config, study) if config.experiment_dir else None
        if log_dir and backend.is_chief:
            _prepare_dir(log_dir, config)
        backend.barrier()
        for index in range(start, end):
            trial = index + 1  # AlgoPerf numbers trials from 1.
            label = f"study {study} trial {trial}"
            trial_dir = os.path.join(log_dir, f"trial_{trial}") if log_dir else None
            hyperparameters = _resumed_hyperparameters(trial_dir, config) or points[index]
            if trial_dir and backend.is_chief:
                os.makedirs(trial_dir, exist_ok=True)
                _clear_stale_failure(trial_dir, config)
                n = logger_utils.next_run_index(trial_dir)  # one pair per (re)start
                logger_utils.write_json(os.path.join(trial_dir, f"flags_{n}.json"),
                                        {**config.flags, "rng_seed": rng_seed})
                logger_utils.write_json(os.path.join(trial_dir, f"meta_data_{n}.json"),
                                        {**metadata, "trial": trial, "study": study})
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
                trial_label=label, on_eval=_fan_out(trackers))
            result = runner.run_trial_safely(
                lambda: runner.train_once(workload, submission, backend, hyperparameters,
                                          runner.trial_seed(rng_seed, study, trial), trial_dir,
                                          trial_config),
                trial_dir, label)
            for tracker in trackers:
                tracker.finish(result)
            results.append(result)
            _log_summary(label, workload, result)
    return results


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


def _log_summary(label: str, workload, result: runner.TrialResult) -> None:
    if result.failed:
        logging.info("%s: failed (%s)", label, result.reason)
    elif result.time_to_target is not None:
        logging.info("%s: reached validation target %.4f at %.2fs submission time "
                     "(%d steps)", label, workload.validation_target_value,
                     result.time_to_target, result.global_step)
    else:
        logging.info("%s: did not reach the target (%d steps, %.2fs submission time)", label,
                     result.global_step, result.accumulated_submission_time)

