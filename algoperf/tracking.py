"""Experiment tracking: every eval row of a trial to Weights & Biases (off by default).

    algoperf run ... --wandb --wandb_project=algoperf [--wandb_entity=me] [--wandb_run_name=x]

One W&B run per trial: grouped by ``<submission>/study_<j>`` (the experiment name the suite
gives each study), job type = workload, config = the trial's hyperparameters + who/what/where
(workload, submission, study, trial, seed, the metadata written to ``meta_data_<n>.json``),
history = every eval row exactly as written to ``eval_measurements.csv`` (step = global step),
summary = the trial's outcome. ``wandb`` is imported only when a tracker is made, so runs
without ``--wandb`` never need it. ``WANDB_MODE=offline`` works as usual (files stay in
``WANDB_DIR``; ``offline_records`` reads them back).
"""
import os
from typing import Any, Dict, Iterator, Optional

FLAG_NAMES = ("wandb", "wandb_project", "wandb_entity", "wandb_run_name")
DEFAULT_PROJECT = "algoperf"


def define_flags(wandb_help: str) -> None:
    """The --wandb flags of a command (``run``, ``suite``); absl flags are per process, and
    each command module is imported on its own."""
    from absl import flags
    flags.DEFINE_boolean("wandb", False, wandb_help)
    flags.DEFINE_string("wandb_project", DEFAULT_PROJECT, "W&B project (--wandb).")
    flags.DEFINE_string("wandb_entity", None, "W&B entity / team (--wandb).")
    flags.DEFINE_string("wandb_run_name", None, "Prefix of the W&B run names (--wandb).")


class TrackingError(ValueError):
    """--wandb without the wandb package, or a bad tracking flag."""


def _import_wandb():
    try:
        import wandb
    except ImportError as error:
        raise TrackingError("--wandb needs the wandb package: pip install -e '.[tracking]'"
                            ) from error
    return wandb


def _init(wandb, **kwargs):
    """``wandb.init``; a refused start (no API key, no network) is one TrackingError."""
    try:
        return wandb.init(**kwargs)
    except wandb.errors.Error as error:
        raise TrackingError(f"--wandb: W&B could not start a run ({error}); run `wandb login`, "
                            f"or set WANDB_MODE=offline to keep the runs on disk") from error


def require() -> None:
    """Fail before any trial runs when --wandb is given but wandb is not installed."""
    _import_wandb()


def enabled(flag_values: Optional[Dict[str, Any]]) -> bool:
    return bool((flag_values or {}).get("wandb"))


def passthrough_flags(flag_values: Dict[str, Any]) -> tuple:
    """The --wandb* flags as command-line arguments (the suite hands them to each trial)."""
    if not enabled(flag_values):
        return ()
    return tuple(f"--{name}={flag_values[name]}" if name != "wandb" else "--wandb"
                 for name in FLAG_NAMES if flag_values.get(name) not in (None, "", False))


class TrialTracker:
    """One W&B run for one trial."""

    def __init__(self, flag_values: Dict[str, Any], *, workload: str, submission: str,
                 experiment_name: str, study: int, num_studies: int, trial: int,
                 hyperparameters: Optional[Dict[str, Any]], metadata: Dict[str, Any]):
        wandb = _import_wandb()
        group = experiment_name + (f"/study_{study}" if num_studies > 1 else "")
        name = f"{group}/{workload}/trial_{trial}"
        if flag_values.get("wandb_run_name"):
            name = f"{flag_values['wandb_run_name']}/{name}"
        self.run = _init(
            wandb, project=flag_values.get("wandb_project") or DEFAULT_PROJECT,
            entity=flag_values.get("wandb_entity") or None, group=group, job_type=workload,
            name=name, reinit="create_new",
            config={"hyperparameters": hyperparameters or {}, "workload": workload,
                    "submission": submission, "study": study, "trial": trial,
                    "experiment_name": experiment_name, "metadata": metadata})

    def log_eval(self, global_step: int, row: Dict[str, Any]) -> None:
        """One eval row (the columns of eval_measurements.csv), at its global step."""
        self.run.log({**row, "global_step": int(global_step)}, step=int(global_step))

    def finish(self, result) -> None:
        self.run.summary.update({
            "failed": bool(result.failed), "reason": result.reason,
            "global_step": int(result.global_step),
            "reached_validation_target": bool(result.reached_validation),
            "reached_test_target": bool(result.reached_test),
            "time_to_target": result.time_to_target,
            "accumulated_submission_time": float(result.accumulated_submission_time)})
        self.run.finish(exit_code=1 if result.failed else 0)


def push_scores(flag_values: Dict[str, Any], result, paths: Dict[str, str],
                name: str = "scores") -> None:
    """The scoring report as a W&B run: the score table, the times table, the profile plot."""
    wandb = _import_wandb()
    run_name = name if not flag_values.get("wandb_run_name") else \
        f"{flag_values['wandb_run_name']}/{name}"
    run = _init(wandb, project=flag_values.get("wandb_project") or DEFAULT_PROJECT,
                entity=flag_values.get("wandb_entity") or None, job_type="scores",
                name=run_name, reinit="create_new",
                config={"scoring": {k: str(v) for k, v in vars(result.config).items()}})
    scores = result.scores.reset_index()
    times = result.times.reset_index()
    run.log({"scores": wandb.Table(dataframe=scores),
             "time_to_target": wandb.Table(dataframe=times),
             "performance_profile": wandb.Image(paths["plot_png"])})
    run.summary.update({f"score/{row.submission}": float(row.score)
                        for row in scores.itertuples()})
    run.finish()


# --- reading an offline run back (tests; a person checking what was logged) -----------------
_BLOCK, _HEADER = 32768, 7


def offline_records(path: str) -> Iterator[Any]:
    """Every protobuf ``Record`` of an offline run's ``run-<id>.wandb`` file, in order.

    The file is W&B's 7-byte header (``:W&B``, 0xBEE1, version) and then a LevelDB-style log:
    32 KiB blocks of chunks, each ``crc32 (4) | length (2, LE) | type (1) | payload``; type 1 is
    a whole record, 2/3/4 the first/middle/last piece of one; a block tail under 7 bytes is
    padding.
    """
    from wandb.proto import wandb_internal_pb2
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file")
    pos, pieces = _HEADER, []
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:
            pos += left
            continue
        length = int.from_bytes(data[pos + 4:pos + 6], "little")
        kind = data[pos + 6]
        payload = data[pos + _HEADER:pos + _HEADER + length]
        pos += _HEADER + length
        if kind == 0:  # zero padding to the end of the block
            pos += (_BLOCK - pos % _BLOCK) % _BLOCK
            continue
        pieces = [payload] if kind in (1, 2) else pieces + [payload]
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(pieces))
            yield record


def offline_run(path: str) -> Dict[str, Any]:
    """An offline run file as plain data: {run, config, history (list of rows), summary}."""
    import json
    out: Dict[str, Any] = {"run": {}, "config": {}, "history": [], "summary": {}}
    for record in offline_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            out["run"] = {"name": r.display_name, "group": r.run_group,
                          "job_type": r.job_type, "project": r.project}
            out["config"].update({u.key: json.loads(u.value_json) for u in r.config.update})
        elif kind == "config":
            out["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                   for i in record.history.item})
        elif kind == "summary":
            out["summary"].update({u.key or "/".join(u.nested_key): json.loads(u.value_json)
                                   for u in record.summary.update})
    return out


def offline_run_files(wandb_dir: str) -> list:
    """The ``run-<id>.wandb`` files of every offline run under ``wandb_dir``, oldest first."""
    root = os.path.join(wandb_dir, "wandb")
    runs = sorted(d for d in os.listdir(root) if d.startswith("offline-run-")) \
        if os.path.isdir(root) else []
    return [os.path.join(root, d, f) for d in runs for f in os.listdir(os.path.join(root, d))
            if f.endswith(".wandb")]
