"""Noticing a submission that reads held-out data.

AlgoPerf's API gives a submission the workload object, and with it the workload's private
input pipeline and eval arrays; nothing stops it from reading validation or test examples.
This cannot be prevented in Python, so it is made visible: the runner marks the time its
submission's functions run (``submission_code``), and three things report a touch of held-out
data (``note``):

- the workload's entry points to held-out splits (``load_arrays``, ``_build_input_queue``,
  ``eval_model``, ...; wrapped in ``workloads.definition``) and its caches of eval data
  (``HeldOutCache``);
- an audit hook on ``open``: a file opened under a held-out folder (``protect``), e.g. a
  prepared ``validation/*.npy`` read directly.

A touch inside submission code is recorded with the submission's line that made it; the
experiment writes the record into the trial's ``meta_data_<n>.json`` (``eval_data_accesses``)
and the scorer notes such trials.
"""
import os
import sys
import traceback
from typing import Dict, Iterable, List, Optional

from absl import logging

MAX_RECORDED = 20


HELD_OUT_SPLITS = ("validation", "test")


class _Monitor:
    def __init__(self):
        self.folder: Optional[str] = None
        self.label = ""
        self.depth = 0
        self.accesses: List[Dict[str, object]] = []
        self.count = 0
        self.protected: List[str] = []
        self.noting = False
        self.hooked = False

    def start(self, submission_folder: Optional[str], label: str) -> None:
        self.folder, self.label = submission_folder, label
        self.depth, self.accesses, self.count = 0, [], 0


_monitor = _Monitor()


def start_trial(submission_folder: Optional[str], label: str = "trial") -> None:
    """Forget the previous trial's record; accesses are attributed to files in this folder."""
    _monitor.start(submission_folder, label)


class _SubmissionCode:
    """Around every call into the submission (re-entrant; a class, not a generator: it runs
    twice per training step)."""

    def __enter__(self):
        _monitor.depth += 1

    def __exit__(self, *exc_info):
        _monitor.depth -= 1
        return False


_SUBMISSION_CODE = _SubmissionCode()


def submission_code() -> _SubmissionCode:
    return _SUBMISSION_CODE


def in_submission_code() -> bool:
    return _monitor.depth > 0


def note(what: str) -> None:
    """Called whenever held-out data is touched; records it if the submission is the one
    touching it."""
    if not in_submission_code() or _monitor.noting:
        return
    _monitor.noting = True
    try:
        _monitor.count += 1
        where = _submission_line()
        if len(_monitor.accesses) < MAX_RECORDED:
            _monitor.accesses.append({"what": what, "where": where})
        if _monitor.count == 1:
            logging.warning("%s: the submission read held-out data: %s at %s (recorded in the "
                            "trial's meta_data)", _monitor.label, what, where)
    finally:
        _monitor.noting = False


def protect(folders: Iterable[str]) -> None:
    """Files under these folders are held-out data: opening one from submission code is
    recorded (through a ``sys.addaudithook`` hook, installed once per process)."""
    _monitor.protected = [os.path.abspath(f) for f in folders]
    if not _monitor.hooked:
        sys.addaudithook(_on_audit_event)
        _monitor.hooked = True


def _on_audit_event(event: str, args) -> None:
    if event != "open" or _monitor.depth == 0 or not _monitor.protected or _monitor.noting:
        return
    path = args[0] if args else None
    if not isinstance(path, (str, bytes, os.PathLike)):
        return  # an open file descriptor
    from algoperf.submission_loader import is_within
    path = os.fsdecode(path)
    if any(is_within(path, folder) for folder in _monitor.protected):
        note(f"open({path!r})")


class HeldOutCache(dict):
    """A workload's cache of eval data: reads of held-out entries from submission code are
    recorded. Keys are a split name or a tuple holding one."""

    @staticmethod
    def _held_out(key) -> bool:
        parts = key if isinstance(key, tuple) else (key,)
        return any(part in HELD_OUT_SPLITS for part in parts)

    def __getitem__(self, key):
        if self._held_out(key):
            note(f"workload cache [{key!r}]")
        return super().__getitem__(key)

    def get(self, key, default=None):
        if self._held_out(key):
            note(f"workload cache [{key!r}]")
        return super().get(key, default)

    def values(self):
        if any(self._held_out(k) for k in self):
            note("workload cache values()")
        return super().values()

    def items(self):
        if any(self._held_out(k) for k in self):
            note("workload cache items()")
        return super().items()


def accesses() -> List[Dict[str, object]]:
    """This trial's recorded accesses (at most MAX_RECORDED)."""
    return list(_monitor.accesses)


def access_count() -> int:
    return _monitor.count


def _submission_line() -> str:
    from algoperf.submission_loader import is_within
    frames = traceback.extract_stack()[:-2]
    if _monitor.folder:
        frames = [f for f in frames if is_within(f.filename, _monitor.folder)]
    if not frames:
        return "unknown"
    frame = frames[-1]
    return f"{frame.filename}:{frame.lineno} in {frame.name}"
