"""AlgoPerf's package name before v0.6, kept so that older submissions run unchanged.

Submissions of the v0.5 leaderboard write ``from algorithmic_efficiency import spec`` and
``from algorithmic_efficiency.pytorch_utils import pytorch_setup``. Every
``algorithmic_efficiency.<name>`` is the module ``algoperf.<name>`` itself (the same object in
``sys.modules``, not a copy), so enums, ``TrainingCompleteError`` and ``Workload`` compare equal
whichever name a submission imports them by.
"""
import importlib
import importlib.abc
import importlib.util
import sys

from algoperf import __version__  # noqa: F401

_OLD, _NEW = __name__, "algoperf"


class _SameModuleLoader(importlib.abc.Loader):
    """Hands the import system the already-imported ``algoperf`` module."""

    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        """Nothing to run (the module was executed under its own name); the import system
        has just set the alias spec on it, so give it back its own."""
        module.__spec__ = self._own_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Finds ``algorithmic_efficiency.X`` as ``algoperf.X``."""

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(_OLD + "."):
            return None
        new_name = _NEW + fullname[len(_OLD):]
        try:
            new_spec = importlib.util.find_spec(new_name)
        except ModuleNotFoundError:
            return None
        if new_spec is None:
            return None
        return importlib.util.spec_from_loader(
            fullname, _SameModuleLoader(new_name),
            is_package=new_spec.submodule_search_locations is not None)


if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())
