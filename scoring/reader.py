"""Reading a folder of logged runs into two DataFrames: one row per eval, one row per trial.

``load_runs(directory, targets)`` returns a ``Runs`` with

- ``evals``: one row per eval of every trial, in logged order: ``submission, study, workload,
  framework, trial, trial_id, eval_index, time, global_step, value`` where ``time`` is the
  ``score`` column (accumulated submission time, s) and ``value`` the workload's validation
  target metric (``validation/<metric>``; NaN stays NaN).
- ``trials``: one row per trial folder, including trials that failed or never evaluated:
  ``trial_id, submission, study, workload, framework, trial, path, status, reason, n_evals,
  hparams, budget, eval_data_access``. ``status`` is ``ok``, ``failed`` (a ``failed.json`` is
  there), ``no_evals`` (no or an empty ``eval_measurements.csv``) or ``truncated`` (a
  half-written last row was dropped: a last line without its newline, or with too few fields).
  ``budget`` is the budget the harness logged for the trial (``meta_data_0.json``, NaN if none)
  and ``eval_data_access`` whether its metadata flags reads of held-out data by the submission.
- ``notes``: what a person should know about the folder (stray folders, failed trials,
  infinite metric values, times that are negative or go backwards, a step logged twice, ...).

Values of the target metric that are infinite are set to NaN (with a note): an ``inf``
accuracy is a broken eval, and it must not reach a target.

Problems that make a file unusable (a row with the wrong number of fields in the middle of a
CSV, a non-numeric value, a missing time or metric column, a workload without a target, no runs
at all) raise ``ScoringInputError`` naming the file.

Why the reading is grouped: the v0.5 archive has ~4,100 small CSVs, and pandas costs about a
millisecond per call whatever the size. Files with the same header line are joined into one
text and parsed by one ``read_csv`` call, after a cheap per-file shape check (every line has the
header's number of commas) that keeps rows of different files from bleeding into each other.
A file that fails the check is cleaned or rejected on its own, with its name in the message.
"""
import dataclasses
import io
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from scoring import layout
from scoring.errors import ScoringInputError
from scoring.targets import TargetsTable, load_targets

TIME_COLUMN = "score"          # AlgoPerf's name for the accumulated submission time
STEP_COLUMN = "global_step"
LABELS = ["submission", "study", "workload", "framework", "trial"]


@dataclasses.dataclass
class Runs:
    evals: pd.DataFrame
    trials: pd.DataFrame
    notes: pd.DataFrame          # columns: path, kind, message
    targets: TargetsTable
    root: str


@dataclasses.dataclass
class _CsvText:
    """One eval_measurements.csv split into its header and a clean body (one row per line)."""
    header: str
    body: str
    n_rows: int
    truncated: bool = False


def load_runs(directory, targets=None, time_column: str = TIME_COLUMN,
              ignore_unknown_workloads: bool = False, read_hparams: bool = True) -> Runs:
    """Reads every trial under ``directory`` (see ``scoring.layout`` for the accepted layouts).

    ``targets`` is a targets JSON path, a dict in that format, a ``TargetsTable``, or None for
    the workload registry.
    """
    root = os.fspath(directory)
    if not os.path.isdir(root):
        raise ScoringInputError(root, "no such folder")
    table = load_targets(targets)
    folders, strays = layout.find_trial_folders(root)
    notes = [(s.path, "stray", s.why) for s in strays]
    folders = _labelled_by_framework(_known_workloads(folders, table, ignore_unknown_workloads,
                                                      notes))
    if not folders:
        raise ScoringInputError(root, "no runs found: expected <submission>/study_<j>/"
                                "<workload>_<framework>/trial_<k>/eval_measurements.csv")
    _check_unique(folders)
    records = _trial_records(folders, read_hparams)
    evals = _read_evals(records, table, time_column, notes)
    _note_trial_status(records, notes)
    trials = pd.DataFrame(records)
    evals = _with_labels(evals, trials)
    notes_df = pd.DataFrame(notes, columns=["path", "kind", "message"])
    return Runs(evals=evals, trials=trials, notes=notes_df, targets=table, root=root)


# ----------------------------------------------------------------------------- trial folders

def _known_workloads(folders, table: TargetsTable, ignore_unknown: bool, notes) -> list:
    known = []
    for folder in folders:
        if folder.workload in table:
            known.append(folder)
        elif ignore_unknown:
            notes.append((folder.path, "unknown_workload",
                          f"workload {folder.workload!r} has no target in {table.source}; "
                          "ignored"))
        else:
            raise ScoringInputError(
                os.path.dirname(folder.path),
                f"unknown workload {folder.workload!r}: no target for it in {table.source} "
                "(pass a --targets_file that has it, or --ignore_unknown_workloads)")
    return known


def _labelled_by_framework(folders) -> list:
    """A submission logged in both frameworks is scored as two, side by side:
    ``nadamw (jax)`` and ``nadamw (pytorch)``; one logged in one framework keeps its name."""
    frameworks: Dict[str, set] = {}
    for f in folders:
        frameworks.setdefault(f.submission, set()).add(f.framework)
    return [dataclasses.replace(f, submission=f"{f.submission} ({f.framework})")
            if len(frameworks[f.submission]) > 1 else f for f in folders]


def _check_unique(folders) -> None:
    """Two folders for one (submission, study, workload, trial)."""
    seen: Dict[tuple, str] = {}
    for f in folders:
        key = (f.submission, f.study, f.workload, f.trial)
        if key in seen:
            raise ScoringInputError(f.path, f"same trial as {seen[key]} (submission "
                                    f"{f.submission!r}, {f.study}, {f.workload}, trial "
                                    f"{f.trial}); keep one of them")
        seen[key] = f.path


def _trial_records(folders, read_hparams: bool) -> List[dict]:
    records = []
    for trial_id, f in enumerate(folders):
        failed_reason = _failed_reason(f.path)
        records.append({
            "trial_id": trial_id, "submission": f.submission, "study": f.study,
            "workload": f.workload, "framework": f.framework, "trial": f.trial, "path": f.path,
            "status": "failed" if failed_reason is not None else "ok",
            "reason": failed_reason or "", "n_evals": 0,
            "hparams": _hparams_text(f.path) if read_hparams else "",
            **_logged_limits(f.path),
        })
    return records


def _logged_limits(trial_dir: str) -> dict:
    """The budget our harness logged before the submission ran, and the eval guard's flag."""
    found = {"budget": np.nan, "eval_data_access": False}
    try:
        with open(os.path.join(trial_dir, "meta_data_0.json")) as f:
            first = json.load(f)
    except (OSError, ValueError):
        return found  # AlgoPerf's own logs: no budget recorded
    budget = (first.get("limits") or {}).get("budget_sec") if isinstance(first, dict) else None
    if isinstance(budget, (int, float)):
        found["budget"] = float(budget)
    for name in os.listdir(trial_dir):
        if name.startswith("meta_data_") and name.endswith(".json"):
            try:
                with open(os.path.join(trial_dir, name)) as f:
                    meta = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and meta.get("eval_data_accessed_by_submission"):
                found["eval_data_access"] = True
    return found


def _failed_reason(trial_dir: str) -> Optional[str]:
    """The reason in ``failed.json`` (our harness writes one for a crashed trial), else None."""
    path = os.path.join(trial_dir, layout.FAILED_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
        reason = record.get("reason") if isinstance(record, dict) else record
        return str(reason or "failed (no reason given)")
    except (OSError, ValueError):
        return "failed (failed.json unreadable)"


def _hparams_text(trial_dir: str) -> str:
    """hparams.json as one compact line, or "" (it only informs summaries, never the score)."""
    try:
        with open(os.path.join(trial_dir, layout.HPARAMS_FILE)) as f:
            return json.dumps(json.load(f), sort_keys=True)
    except (OSError, ValueError):
        return ""


def _note_trial_status(records: List[dict], notes) -> None:
    for row in records:
        if row["status"] == "failed":
            notes.append((row["path"], "failed", f"trial failed: {row['reason']}"))
        elif row["status"] == "no_evals":
            notes.append((row["path"], "no_evals", "no evals logged (missing or empty "
                          f"{layout.EVAL_FILE}); counts as not reaching the target"))
        elif row["status"] == "truncated":
            notes.append((row["path"], "truncated", "last row of a half-written "
                          f"{layout.EVAL_FILE} dropped"))
        if row["eval_data_access"]:
            notes.append((row["path"], "eval_data_access", "the submission read held-out "
                          "(validation/test) data during training (meta_data_<n>.json)"))


# ----------------------------------------------------------------------------- CSV reading

def _read_evals(records: List[dict], table: TargetsTable, time_column: str,
                notes) -> pd.DataFrame:
    """Parses every trial's eval file; sets each record's ``status`` and ``n_evals``."""
    groups: Dict[str, List[Tuple[int, str, _CsvText]]] = {}
    metric_of: Dict[int, str] = {}
    for record in records:
        target = table[record["workload"]]
        path = os.path.join(record["path"], layout.EVAL_FILE)
        csv_text = _load_csv_text(path) if os.path.exists(path) else None
        if csv_text is not None:
            _check_columns(path, csv_text.header, target, time_column)
        if csv_text is None or csv_text.n_rows == 0:
            if record["status"] == "ok":
                record["status"] = "no_evals"
            continue
        if csv_text.truncated and record["status"] == "ok":
            record["status"] = "truncated"
        record["n_evals"] = csv_text.n_rows
        metric_of[record["trial_id"]] = target.validation_column
        groups.setdefault(csv_text.header, []).append((record["trial_id"], path, csv_text))
    parts = [_parse_group(header, members, metric_of, time_column)
             for header, members in groups.items()]
    if not parts:
        return _empty_evals()
    evals = pd.concat(parts, ignore_index=True)
    evals = evals.sort_values(["trial_id", "eval_index"], kind="stable", ignore_index=True)
    _check_values(evals, records, metric_of, notes)
    return evals


def _check_values(evals: pd.DataFrame, records: List[dict], metric_of: Dict[int, str],
                  notes) -> None:
    """Notes (one per trial and kind) on values a correct run never logs; infinite metric
    values become NaN so they cannot reach a target."""
    path_of = {r["trial_id"]: os.path.join(r["path"], layout.EVAL_FILE) for r in records}
    trial = evals["trial_id"].to_numpy()
    row = evals["eval_index"].to_numpy()
    time = evals["time"].to_numpy()
    step = evals["global_step"].to_numpy()
    value = evals["value"].to_numpy().copy()
    same_trial = np.r_[False, trial[1:] == trial[:-1]]
    checks = [
        ("infinite_value", np.isinf(value),
         lambda i: f"{metric_of[trial[i]]} is {value[i]} in row {row[i] + 1}: a broken eval, "
                   "not counted"),
        ("negative_time", time < 0, lambda i: f"negative time {time[i]} in row {row[i] + 1}"),
        ("time_backwards", same_trial & (np.r_[np.inf, np.diff(time)] < 0),
         lambda i: f"time goes backwards in row {row[i] + 1} ({time[i - 1]} -> {time[i]})"),
        ("duplicate_step", _repeated_steps(trial, step),
         lambda i: f"global_step {step[i]:.0f} logged again in row {row[i] + 1}"),
    ]
    for kind, bad, describe in checks:
        for i in _first_per_trial(trial, bad):
            count = int(bad[trial == trial[i]].sum())
            more = f" (and {count - 1} more rows)" if count > 1 else ""
            notes.append((path_of[trial[i]], kind, describe(i) + more))
    value[np.isinf(value)] = np.nan
    evals["value"] = value


def _repeated_steps(trial: np.ndarray, step: np.ndarray) -> np.ndarray:
    keys = pd.DataFrame({"trial": trial, "step": step})
    return (keys.duplicated() & ~np.isnan(step)).to_numpy()


def _first_per_trial(trial: np.ndarray, bad: np.ndarray) -> List[int]:
    """Index of the first flagged row of each trial that has one."""
    indices = np.flatnonzero(bad)
    if not len(indices):
        return []
    _, first = np.unique(trial[indices], return_index=True)
    return [int(i) for i in indices[first]]


def _load_csv_text(path: str) -> Optional[_CsvText]:
    """Reads one CSV and returns a body with exactly one well-formed row per line."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise ScoringInputError(path, "not a text CSV (not UTF-8)") from None
    except OSError as e:
        raise ScoringInputError(path, f"cannot read ({e.strerror})") from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    cut = not text.endswith("\n")  # killed while writing: the last line is not whole
    if cut:
        text = text[:text.rfind("\n") + 1]
    if not text.strip():
        return None
    header, _, body = text.partition("\n")
    if '"' in text:
        raise ScoringInputError(path, "quoted CSV fields are not expected in "
                                f"{layout.EVAL_FILE} (numbers only)")
    n_rows = body.count("\n")
    if body.count(",") == n_rows * header.count(",") and "\n\n" not in body:
        return _CsvText(header, body, n_rows, truncated=cut)
    cleaned = _clean_body(path, header, body)
    cleaned.truncated |= cut
    return cleaned


def _clean_body(path: str, header: str, body: str) -> _CsvText:
    """Slow path for a file that failed the shape check: drop blank lines and a half-written
    last row; any other row with the wrong number of fields is an error."""
    expected = header.count(",")
    lines = [line for line in body.split("\n") if line.strip()]
    truncated = False
    if lines and lines[-1].count(",") < expected:
        lines.pop()  # a run killed while writing its last eval
        truncated = True
    for i, line in enumerate(lines):
        if line.count(",") != expected:
            raise ScoringInputError(path, f"row {i + 1} has {line.count(',') + 1} fields, the "
                                    f"header has {expected + 1}")
    body = "".join(line + "\n" for line in lines)
    return _CsvText(header, body, len(lines), truncated)


def _check_columns(path: str, header: str, target, time_column: str) -> None:
    columns = header.split(",")
    for column, what in ((time_column, "the time column"),
                         (target.validation_column, f"the target metric of {target.name}")):
        if column not in columns:
            raise ScoringInputError(path, f"missing column {column!r} ({what})")


def _parse_group(header: str, members, metric_of: Dict[int, str],
                 time_column: str) -> pd.DataFrame:
    """One read_csv for all files sharing ``header``; rows are tagged with their trial id."""
    columns = header.split(",")
    metrics = {metric_of[tid] for tid, _, _ in members}
    usecols = [time_column, *sorted(metrics)]
    if STEP_COLUMN in columns:
        usecols.append(STEP_COLUMN)
    text = header + "\n" + "".join(csv_text.body for _, _, csv_text in members)
    try:
        frame = pd.read_csv(io.StringIO(text), usecols=usecols, dtype=np.float64)
    except (ValueError, pd.errors.ParserError) as e:
        for _, path, csv_text in members:  # find the file to blame
            _parse_one(path, csv_text, usecols)
        paths = [path for _, path, _ in members]
        raise ScoringInputError(os.path.commonpath(paths), f"cannot parse: {e}") from None
    counts = [csv_text.n_rows for _, _, csv_text in members]
    trial_ids = np.repeat([tid for tid, _, _ in members], counts)
    starts = np.repeat(np.cumsum([0] + counts[:-1]), counts)
    value = np.full(len(frame), np.nan)
    for metric in metrics:
        rows = np.repeat([metric_of[tid] == metric for tid, _, _ in members], counts)
        value[rows] = frame[metric].to_numpy()[rows]
    evals = pd.DataFrame({
        "trial_id": trial_ids,
        "eval_index": np.arange(len(frame)) - starts,
        "time": frame[time_column].to_numpy(),
        "global_step": frame[STEP_COLUMN].to_numpy() if STEP_COLUMN in frame else np.nan,
        "value": value,
    })
    _check_times(evals, members)
    return evals


def _parse_one(path: str, csv_text: _CsvText, usecols: Sequence[str]) -> None:
    """Re-parses one file as text to name the file, column and row with a non-number."""
    frame = pd.read_csv(io.StringIO(csv_text.header + "\n" + csv_text.body), usecols=usecols,
                        dtype=str, keep_default_na=False)
    for column in usecols:
        raw = frame[column].str.strip()
        bad = pd.to_numeric(raw.where(raw != "", "nan"), errors="coerce").isna() & ~raw.str.lower(
        ).isin(["", "nan"])
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise ScoringInputError(path, f"column {column!r} row {row + 1}: "
                                    f"{frame[column].iloc[row]!r} is not a number")


def _check_times(evals: pd.DataFrame, members) -> None:
    missing = np.isnan(evals["time"].to_numpy())
    if missing.any():
        trial_id = evals["trial_id"].to_numpy()[missing][0]
        path = next(path for tid, path, _ in members if tid == trial_id)
        row = int(evals["eval_index"].to_numpy()[missing][0])
        raise ScoringInputError(path, f"empty time value in row {row + 1}")


def _empty_evals() -> pd.DataFrame:
    return pd.DataFrame({"trial_id": np.array([], dtype=np.int64),
                         "eval_index": np.array([], dtype=np.int64),
                         "time": [], "global_step": [], "value": []})


def _with_labels(evals: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Adds the trial's labels (categoricals: cheap for ~400k rows) in front of each eval."""
    trial_id = evals["trial_id"].to_numpy()
    labelled = {}
    for column in LABELS:
        values = trials[column]
        if column == "trial":
            labelled[column] = values.to_numpy()[trial_id]
            continue
        categories = pd.Categorical(values)
        labelled[column] = pd.Categorical.from_codes(categories.codes[trial_id],
                                                     categories.categories)
    return pd.concat([pd.DataFrame(labelled), evals], axis=1)
