"""Finding trials in a folder of logs laid out the AlgoPerf way.

    <root>/<submission>/study_<j>/<workload>_<framework>/trial_<k>/eval_measurements.csv

A trial folder is any ``trial_<k>`` directly inside a ``<workload>_<jax|pytorch>`` folder. The
folders between ``<root>`` and the workload folder name the submission and the study:

    parts between root and workload folder      submission              study
    (none)                                      name of root            study_0
    study_<j>                                   name of root            study_<j>
    <name>                                      <name>                  study_0
    <a>/.../<b>/<study>                          "<a>/.../<b>"           <study>

so ``--submission_directory`` may point at a ruleset folder (many submissions), at one
submission, or at one experiment of our own harness. Timestamp suffixes that AlgoPerf tools add
to experiment folders (``study_0-2023-10-11-16-58-40``) are dropped from the labels. Anything
else (``trial_<k>`` folders outside a workload folder, workload folders without trials) is a
stray: reported, never scored.
"""
import dataclasses
import os
import re
from typing import List, Tuple

EVAL_FILE = "eval_measurements.csv"
FAILED_FILE = "failed.json"
HPARAMS_FILE = "hparams.json"

TRIAL_DIR = re.compile(r"^trial_(\d+)$")
WORKLOAD_DIR = re.compile(r"^(?P<workload>.+)_(?P<framework>jax|pytorch)$")
STUDY_DIR = re.compile(r"^study_(\d+)")
TIMESTAMP_SUFFIX = re.compile(r"[-_]\d{4}-\d{2}-\d{2}[-_T]\d{2}[-:]\d{2}[-:]\d{2}$")


@dataclasses.dataclass(frozen=True)
class TrialFolder:
    submission: str
    study: str
    workload: str
    framework: str
    trial: int
    path: str


@dataclasses.dataclass(frozen=True)
class Stray:
    path: str
    why: str


def _label(folder_name: str) -> str:
    return TIMESTAMP_SUFFIX.sub("", folder_name)


def _study_label(folder_name: str) -> str:
    match = STUDY_DIR.match(folder_name)
    return f"study_{int(match.group(1))}" if match else _label(folder_name)


def submission_and_study(root: str, parts: Tuple[str, ...]) -> Tuple[str, str]:
    """Labels from the folders between ``root`` and a workload folder (table in module doc)."""
    root_name = _label(os.path.basename(os.path.normpath(os.path.abspath(root))))
    if not parts:
        return root_name, "study_0"
    if len(parts) == 1:
        if STUDY_DIR.match(parts[0]):
            return root_name, _study_label(parts[0])
        return _label(parts[0]), "study_0"
    return "/".join(_label(p) for p in parts[:-1]), _study_label(parts[-1])


def find_trial_folders(root: str) -> Tuple[List[TrialFolder], List[Stray]]:
    """All trial folders under ``root`` (sorted), and the stray folders met on the way."""
    trials: List[TrialFolder] = []
    strays: List[Stray] = []
    root = os.path.normpath(root)
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        name = os.path.basename(dirpath)
        workload_match = WORKLOAD_DIR.match(name) if dirpath != root else None
        if workload_match:
            found = _trials_in_workload_folder(root, dirpath, dirnames, workload_match)
            if not found:
                strays.append(Stray(dirpath, "workload folder without trial_<k> folders"))
            trials.extend(found)
            dirnames[:] = []  # nothing below a workload folder but its trials
        elif TRIAL_DIR.match(name):
            strays.append(Stray(dirpath, "trial folder outside a <workload>_<framework> folder"))
            dirnames[:] = []
    return trials, strays


def _trials_in_workload_folder(root, dirpath, dirnames, match) -> List[TrialFolder]:
    parent = os.path.relpath(os.path.dirname(dirpath), root)
    parts = () if parent == os.curdir else tuple(parent.split(os.sep))
    submission, study = submission_and_study(root, parts)
    found = []
    for child in dirnames:
        trial_match = TRIAL_DIR.match(child)
        if trial_match:
            found.append(TrialFolder(submission, study, match.group("workload"),
                                     match.group("framework"), int(trial_match.group(1)),
                                     os.path.join(dirpath, child)))
    return sorted(found, key=lambda t: t.trial)
