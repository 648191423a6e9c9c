"""Logs in AlgoPerf's layout, written so a crash never leaves a half-written file.

    <experiment_dir>/<experiment_name>/<workload>_<framework>/
        trial_<k>/flags_<n>.json, meta_data_<n>.json (n: one pair per (re)start of the trial)
        trial_<k>/eval_measurements.csv             (one row per eval)
        trial_<k>/measurements.csv                  (submission's train metrics + eval rows)
        trial_<k>/hparams.json
        trial_<k>/failed.json                       (only for a trial that failed, with why)
        trial_<k>/complete.json                     (a trial whose loop ended: why, when)

Every write goes to a temporary file in the same folder and is moved into place with
``os.replace`` (atomic on POSIX), so a reader sees the old file or the new one, never half.
Files get the permissions the umask gives (0644 under the usual 022), not ``mkstemp``'s 0600,
so another user, or the host user of a container's volume, can read the logs.
"""
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional

import pandas as pd

EVAL_FILE = "eval_measurements.csv"
MEASUREMENTS_FILE = "measurements.csv"
HPARAMS_FILE = "hparams.json"
FAILED_FILE = "failed.json"
COMPLETE_FILE = "complete.json"


def _file_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=os.path.basename(path))
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _to_python(value: Any) -> Any:
    """Scalars as plain Python numbers (tensors and numpy scalars go through ``.item()``)."""
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (ValueError, RuntimeError):
            pass
    return value


class MetricsLogger:
    """Collects a trial's rows; ``workload.metrics_logger`` is one of these.

    Submissions call ``append_scalar_metrics`` from inside ``update_params`` (timed), so
    non-eval rows are only buffered; files are rewritten at eval points, off the clock.
    """

    def __init__(self, trial_dir: Optional[str], eval_rows: Optional[List[Dict]] = None,
                 train_rows: Optional[List[Dict]] = None):
        self.trial_dir = trial_dir
        self.eval_rows: List[Dict[str, Any]] = list(eval_rows or [])
        self.train_rows: List[Dict[str, Any]] = list(train_rows or [])

    def append_scalar_metrics(self, metrics: Dict[str, Any], global_step: int,
                              preemption_count: Optional[int] = None,
                              is_eval: bool = False) -> None:
        row = {k: _to_python(v) for k, v in metrics.items()}
        row["global_step"] = int(global_step)
        if preemption_count is not None:
            row["preemption_count"] = int(preemption_count)
        if is_eval:
            self.eval_rows.append(row)
            self.flush()
        else:
            self.train_rows.append(row)

    def flush(self) -> None:
        if self.trial_dir is None:
            return
        os.makedirs(self.trial_dir, exist_ok=True)
        if self.eval_rows:
            atomic_write_text(os.path.join(self.trial_dir, EVAL_FILE),
                              pd.DataFrame(self.eval_rows).to_csv(index=False))
        rows = sorted(self.train_rows + self.eval_rows, key=lambda r: r["global_step"])
        if rows:
            atomic_write_text(os.path.join(self.trial_dir, MEASUREMENTS_FILE),
                              pd.DataFrame(rows).to_csv(index=False))


def record_failure(trial_dir: str, reason: str, details: str = "",
                   global_step: Optional[int] = None) -> None:
    os.makedirs(trial_dir, exist_ok=True)
    write_json(os.path.join(trial_dir, FAILED_FILE),
               {"failed": True, "reason": reason, "global_step": global_step,
                "details": details})


def _git_hash() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _package_versions(names: List[str]) -> Dict[str, str]:
    from importlib import metadata
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def collect_metadata(rng_seed: int, framework_info: Dict[str, Any]) -> Dict[str, Any]:
    """Hardware, library versions, git hash and seed: what a reader needs to trust a run."""
    return {
        "rng_seed": rng_seed,
        "git_hash": _git_hash(),
        "python_version": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        # The cores this process may run on (the suite pins each worker's trials).
        "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else None,
        "hostname": platform.node(),
        "packages": _package_versions(
            ["algoperf", "torch", "numpy", "pandas", "absl-py", "jax", "jaxlib", "flax", "optax"]),
        **framework_info,
    }


def next_run_index(workload_dir: str, prefix: str = "meta_data_") -> int:
    """n for this (re)start's flags_<n>.json / meta_data_<n>.json: one more than the last."""
    if not os.path.isdir(workload_dir):
        return 0
    taken = [int(f[len(prefix):-5]) for f in os.listdir(workload_dir)
             if f.startswith(prefix) and f.endswith(".json") and f[len(prefix):-5].isdigit()]
    return max(taken) + 1 if taken else 0


def is_finite_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
