"""Experiment tracking: every eval row of a trial to Weights & Biases and/or TensorBoard.

    algoperf run ... --wandb --wandb_project=algoperf [--wandb_entity=me] [--wandb_run_name=x]
    algoperf run ... --tensorboard      # then: tensorboard --logdir <experiment_dir>

Both are off by default; each tracker has ``log_eval(global_step, row)`` and
``finish(result)``, and ``trial_trackers`` makes the ones the flags ask for.

One W&B run per trial: grouped by ``<submission>/study_<j>`` (the experiment name the suite
gives each study), job type = workload, config = the trial's hyperparameters + who/what/where
(workload, submission, study, trial, seed, the metadata written to ``meta_data_<n>.json``),
history = every eval row exactly as written to ``eval_measurements.csv`` (step = global step),
summary = the trial's outcome. ``wandb`` is imported only when a tracker is made, so runs
without ``--wandb`` never need it. ``WANDB_MODE=offline`` works as usual (files stay in
``WANDB_DIR``; ``offline_records`` reads them back). The run's id is kept in the trial folder
(``wandb_run_id.txt``), so a resumed trial (``--resume_last_run``, a Slurm requeue) continues
the same W&B run instead of starting a second one.

TensorBoard: the same rows as scalars (tag = CSV column) in ``<trial_dir>/tensorboard/``,
written by ``torch.utils.tensorboard``; a resumed trial adds an event file beside the first.
"""
import os
import secrets
from typing import Any, Dict, Iterator, Optional

FLAG_NAMES = ("wandb", "wandb_project", "wandb_entity", "wandb_run_name", "tensorboard")
DEFAULT_PROJECT = "algoperf"
RUN_ID_FILE = "wandb_run_id.txt"
TENSORBOARD_DIR = "tensorboard"


def define_flags(wandb_help: str) -> None:
    """The --wandb flags of a command (``run``, ``suite``); absl flags are per process, and
    each command module is imported on its own."""
    from absl import flags
    flags.DEFINE_boolean("wandb", False, wandb_help)
    flags.DEFINE_string("wandb_project", DEFAULT_PROJECT, "W&B project (--wandb).")
    flags.DEFINE_string("wandb_entity", None, "W&B entity / team (--wandb).")
    flags.DEFINE_string("wandb_run_name", None, "Prefix of the W&B run names (--wandb).")
    flags.DEFINE_boolean("tensorboard", False, "Also write each trial's eval rows as "
                         f"TensorBoard scalars to <trial_dir>/{TENSORBOARD_DIR}/ (needs "
                         "'.[tracking]').")


class TrackingError(ValueError):
    """--wandb / --tensorboard without their package, or a W&B run that cannot start."""


def _import_wandb():
    try:
        import wandb
    except ImportError as error:
        raise TrackingError("--wandb needs the wandb package: pip install -e '.[tracking]'"
                            ) from error
    return wandb


def _init(wandb, flag_values: Dict[str, Any], name: str, **kwargs):
    """``wandb.init`` in the flags' project and entity, the run named ``name`` under the
    --wandb_run_name prefix; a refused start (no API key, no network) is one TrackingError."""
    if flag_values.get("wandb_run_name"):
        name = f"{flag_values['wandb_run_name']}/{name}"
    try:
        return wandb.init(project=flag_values.get("wandb_project") or DEFAULT_PROJECT,
                          entity=flag_values.get("wandb_entity") or None, name=name,
                          reinit="create_new", **kwargs)
    except wandb.errors.Error as error:
        raise TrackingError(f"--wandb: W&B could not start a run ({error}); run `wandb login`, "
                            f"or set WANDB_MODE=offline to keep the runs on disk") from error


def _import_summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise TrackingError("--tensorboard needs the tensorboard package: pip install -e "
                            "'.[tracking]'") from error
    return SummaryWriter


def require(flag_values: Dict[str, Any]) -> None:
    """Fail before any trial runs when a tracker is asked for but its package is missing."""
    if enabled(flag_values):
        _import_wandb()
    if tensorboard_enabled(flag_values):
        _import_summary_writer()


def enabled(flag_values: Optional[Dict[str, Any]]) -> bool:
    """Whether --wandb is on."""
    return bool((flag_values or {}).get("wandb"))


def tensorboard_enabled(flag_values: Optional[Dict[str, Any]]) -> bool:
    return bool((flag_values or {}).get("tensorboard"))


def passthrough_flags(flag_values: Dict[str, Any]) -> tuple:
    """The tracking flags as command-line arguments (the suite hands them to each trial);
    the --wandb_* settings only with --wandb."""
    args = []
    for name in FLAG_NAMES:
        value = flag_values.get(name)
        if value in (None, "", False) or (name.startswith("wandb_") and not enabled(flag_values)):
            continue
        args.append(f"--{name}" if value is True else f"--{name}={value}")
    return tuple(args)


def trial_trackers(flag_values: Dict[str, Any], trial_dir: Optional[str], **trial) -> list:
    """The trackers the flags ask for, for one trial (``trial``: TrialTracker's keywords)."""
    trackers = []
    if enabled(flag_values):
        trackers.append(TrialTracker(flag_values, trial_dir=trial_dir, **trial))
    if tensorboard_enabled(flag_values) and trial_dir:
        trackers.append(TensorBoardWriter(trial_dir, trial.get("hyperparameters")))
    return trackers


class TrialTracker:
    """One W&B run for one trial."""

    def __init__(self, flag_values: Dict[str, Any], *, workload: str, submission: str,
                 experiment_name: str, study: int, num_studies: int, trial: int,
                 hyperparameters: Optional[Dict[str, Any]], metadata: Dict[str, Any],
                 trial_dir: Optional[str] = None):
        wandb = _import_wandb()
        group = experiment_name + (f"/study_{study}" if num_studies > 1 else "")
        self.run = _init(
            wandb, flag_values, f"{group}/{workload}/trial_{trial}", group=group,
            job_type=workload, **_run_identity(trial_dir),
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


def _run_identity(trial_dir: Optional[str]) -> Dict[str, str]:
    """``id`` (+ ``resume="allow"`` when continuing) for ``wandb.init``: the id is made once per
    trial and stored in the trial folder, so every (re)start of the trial logs to one run."""
    if not trial_dir:
        return {}
    path = os.path.join(trial_dir, RUN_ID_FILE)
    if os.path.exists(path):
        with open(path) as f:
            return {"id": f.read().strip(), "resume": "allow"}
    run_id = secrets.token_hex(6)  # W&B accepts any [a-z0-9] id of our choosing
    os.makedirs(trial_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write(run_id + "\n")
    return {"id": run_id}


class TensorBoardWriter:
    """One trial's eval rows as TensorBoard scalars (tag = CSV column, step = global step)."""

    def __init__(self, trial_dir: str, hyperparameters: Optional[Dict[str, Any]] = None):
        import json
        writer_class = _import_summary_writer()
        self.writer = writer_class(log_dir=os.path.join(trial_dir, TENSORBOARD_DIR))
        if hyperparameters:
            self.writer.add_text("hyperparameters", json.dumps(hyperparameters, indent=1))

    def log_eval(self, global_step: int, row: Dict[str, Any]) -> None:
        for tag, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(tag, value, global_step=int(global_step))
        self.writer.flush()  # a killed trial keeps every row it logged

    def finish(self, result) -> None:
        self.writer.add_text("outcome", f"failed={bool(result.failed)} "
                             f"reached_validation_target={bool(result.reached_validation)} "
                             f"time_to_target={result.time_to_target} "
                             f"global_step={int(result.global_step)}")
        self.writer.close()


def push_scores(flag_values: Dict[str, Any], result, paths: Dict[str, str],
                name: str = "scores") -> None:
    """The scoring report as a W&B run: the score table, the times table, the profile plot."""
    wandb = _import_wandb()
    run = _init(wandb, flag_values, name, job_type="scores",
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
    """An offline run file as plain data: {run, id, config, history (list of rows), summary}."""
    import json
    out: Dict[str, Any] = {"run": {}, "id": None, "config": {}, "history": [], "summary": {}}
    for record in offline_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            out["run"] = {"name": r.display_name, "group": r.run_group,
                          "job_type": r.job_type, "project": r.project}
            out["id"] = r.run_id
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
