"""Errors a user can act on: each names the file or folder at fault and what is wrong with it."""
import os


class ScoringInputError(Exception):
    """A log folder, CSV or targets file that the scorer cannot use.

    ``str(error)`` is one line, ``"<path>: <problem>"``, so the CLI can print it as is.
    """

    def __init__(self, path: str, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class TargetsUnavailableError(ScoringInputError):
    """No targets file was given and the workload registry could not be imported."""


class StrictCheckError(ScoringInputError):
    """``strict=True`` and the runs do not have the expected studies, trials or workloads."""
