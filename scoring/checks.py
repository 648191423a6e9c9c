"""Completeness checks: the expected studies, trials and workloads of every submission.

Official scoring expects, per submission, ``num_studies`` studies, each with ``num_trials``
trials of every scored workload (5 x 5 for external tuning, 5 x 1 for self-tuning). With
``strict`` the first gap raises ``StrictCheckError`` (listing up to ten of them); otherwise gaps
are returned as notes and scoring goes on, treating whatever is missing as a miss.
"""
import os
from typing import List, Sequence, Tuple

import pandas as pd

from scoring.errors import StrictCheckError

Note = Tuple[str, str, str]  # (path, kind, message)


def completeness_notes(trials: pd.DataFrame, workloads: Sequence[str], num_studies: int,
                       num_trials: int) -> List[Note]:
    notes: List[Note] = []
    counts = trials.groupby(["submission", "study", "workload"], observed=True).size().to_dict()
    for submission, paths in trials.groupby("submission", observed=True, sort=True)["path"]:
        folder = os.path.commonpath(list(paths))
        studies = sorted({study for (sub, study, _) in counts if sub == submission},
                         key=_natural)
        if len(studies) != num_studies:
            notes.append((folder, "count", f"{submission}: {len(studies)} studies, expected "
                          f"{num_studies}"))
        for workload in workloads:
            found = [counts.get((submission, study, workload), 0) for study in studies]
            if not any(found):
                notes.append((folder, "missing_workload", f"{submission}: no runs of "
                              f"{workload} (counts as a miss)"))
                continue
            for study, n in zip(studies, found):
                if n != num_trials:
                    notes.append((folder, "count", f"{submission}/{study}/{workload}: {n} "
                                  f"trials, expected {num_trials}"))
    return notes


def enforce(notes: List[Note], root: str) -> None:
    """Raises ``StrictCheckError`` if there is any completeness note."""
    if notes:
        shown = "; ".join(message for _, _, message in notes[:10])
        more = f" (and {len(notes) - 10} more)" if len(notes) > 10 else ""
        raise StrictCheckError(root, f"strict check failed: {shown}{more}")


def _natural(label: str):
    digits = "".join(ch for ch in label if ch.isdigit())
    return (int(digits) if digits else -1, label)
