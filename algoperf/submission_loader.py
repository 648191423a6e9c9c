"""Importing a submission file the way AlgoPerf does, and pointing at its own code on errors.

AlgoPerf imports ``submission.py`` as a module path relative to the working directory, so the
published submissions import their helpers in two ways, and both work here:

    from optimizers.distributed_shampoo import DistributedShampoo   # a package beside it
    from submissions.self_tuning.muon_torch.muon import Muon         # a path from the cwd

While a submission is the loaded one, its folder and the working directory lead ``sys.path``,
and a finder resolves dotted paths below the working directory that an installed package of
the same first name (this project's own ``submissions``) does not have. Loading the next
submission first unloads the previous one's modules and paths, so two submissions that each
ship an ``optimizers/`` package never see each other's code.

The submission module is registered under a name fixed by its absolute path
(``algoperf_submission_<hash>.<stem>``, in a package over its folder, so relative imports
work too), so that objects of classes it defines can be pickled into a checkpoint and
unpickled by a resumed process.
"""
import dataclasses
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
import traceback
from types import ModuleType, TracebackType
from typing import List, Optional, Set

REQUIRED_FUNCTIONS = ("get_batch_size", "init_optimizer_state", "update_params",
                      "data_selection")
# The harness's own packages: never unloaded, whatever folder a submission sits in (a second
# copy of ``algoperf.spec`` would bring enums that compare unequal to the first's).
_HARNESS_PACKAGES = ("algoperf", "algorithmic_efficiency", "workloads", "scoring")
_PROJECT_SUBMISSIONS = os.path.normpath(os.path.join(os.path.dirname(__file__), "..",
                                                     "submissions"))


class SubmissionError(ValueError):
    """A submission file that cannot be used (missing file or function, failing import)."""


@dataclasses.dataclass
class _Scope:
    """What loading one submission added to the interpreter, to be taken away again."""
    folder: str
    paths: List[str]
    finder: "_BelowRootsFinder"
    module_name: str
    modules: Set[str] = dataclasses.field(default_factory=set)
    # The submission file and the Python files of the modules its import brought in, other
    # than the harness's, the standard library's and installed packages'.
    source_files: List[str] = dataclasses.field(default_factory=list)


_current: Optional[_Scope] = None


class _BelowRootsFinder(importlib.abc.MetaPathFinder):
    """Finds ``a.b.c`` as ``<root>/a/b/c(.py|/)`` when the normal search of ``a.b``'s path
    has no ``c``: the case of a package name that this project also uses."""

    def __init__(self, roots: List[str]):
        self.roots = roots
        self.resolved_dirs: List[str] = []

    def find_spec(self, fullname, path=None, target=None):
        if path is None or "." not in fullname:
            return None  # top-level names come from sys.path, where the roots lead
        if importlib.machinery.PathFinder.find_spec(fullname, path) is not None:
            return None
        parts = fullname.split(".")
        for root in self.roots:
            base = os.path.join(root, *parts)
            if os.path.isfile(base + ".py"):
                self.resolved_dirs.append(os.path.dirname(base))
                return importlib.util.spec_from_file_location(fullname, base + ".py")
            if os.path.isdir(base):
                self.resolved_dirs.append(base)
                init = os.path.join(base, "__init__.py")
                if os.path.isfile(init):
                    return importlib.util.spec_from_file_location(
                        fullname, init, submodule_search_locations=[base])
                spec = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
                spec.submodule_search_locations = [base]
                return spec
        return None


def module_name_for(path: str) -> str:
    """The name of the package over the submission's folder: the same for the same file in
    every process (the submission is its module ``<name>.<file stem>``)."""
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12]
    return f"algoperf_submission_{digest}"


def _module_stem(path: str) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem if stem.isidentifier() else "submission"


def load_submission(path: str) -> ModuleType:
    """Import a submission file by path and check it defines the API's functions."""
    if os.path.isdir(path):
        hint = os.path.join(path, "submission.py")
        raise SubmissionError(
            f"--submission_path={path} is a folder; expected the submission's Python file"
            + (f" (did you mean {hint}?)" if os.path.isfile(hint) else ""))
    if not os.path.isfile(path):
        raise SubmissionError(f"--submission_path: no such file: {path}")
    path = os.path.abspath(path)
    unload_current()
    scope = _enter(path)
    # A package over the submission's folder, so that relative imports (``from .inv6 import
    # Inv``) resolve there, as they do for AlgoPerf's module-path import.
    package = ModuleType(scope.module_name)
    package.__path__ = [scope.folder]
    package.__package__ = scope.module_name
    sys.modules[scope.module_name] = package
    name = f"{scope.module_name}.{_module_stem(path)}"
    scope.modules.add(name)
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    before = set(sys.modules)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as error:
        raise SubmissionError(f"{error.filename}:{error.lineno}: SyntaxError: {error.msg}"
                              ) from None
    except Exception as error:  # noqa: BLE001 - any import failure is one line
        raise SubmissionError(f"{path}: importing it failed: "
                              f"{describe_failure(error, scope.folder)}") from None
    finally:
        added = set(sys.modules) - before
        scope.modules |= {name for name in added if _belongs_to(sys.modules.get(name), scope)}
        scope.source_files = [path] + sorted(
            {f for f in (_own_file(sys.modules.get(name)) for name in added) if f} - {path})
    missing = [f for f in REQUIRED_FUNCTIONS if not callable(getattr(module, f, None))]
    if missing:
        raise SubmissionError(f"{path}: submission does not define {', '.join(missing)}")
    return module


def source_files() -> List[str]:
    """The loaded submission's own code (``_Scope.source_files``); empty when none is loaded."""
    return list(_current.source_files) if _current is not None else []


_INSTALLED = tuple(os.path.abspath(p) for p in {sysconfig.get_paths()[k]
                                                for k in ("stdlib", "purelib", "platlib")})


def _own_file(module: Optional[ModuleType]) -> Optional[str]:
    name = getattr(module, "__name__", "") or ""
    path = getattr(module, "__file__", None) or ""
    if not path.endswith(".py") or name.split(".")[0] in _HARNESS_PACKAGES:
        return None
    path = os.path.abspath(path)
    return None if any(is_within(path, root) for root in _INSTALLED) else path


def _enter(path: str) -> _Scope:
    global _current
    folder = os.path.dirname(path)
    roots = list(dict.fromkeys([folder, os.getcwd()]))
    added = [root for root in roots if root not in sys.path]
    sys.path[:0] = added
    finder = _BelowRootsFinder(roots)
    sys.meta_path.insert(0, finder)
    importlib.invalidate_caches()
    _current = _Scope(folder, added, finder, module_name_for(path))
    return _current


def _belongs_to(module: Optional[ModuleType], scope: _Scope) -> bool:
    """A module imported from the submission's folder or found below a root by the finder
    (this project's own modules excepted)."""
    name = getattr(module, "__name__", "") or ""
    if name.split(".")[0] in _HARNESS_PACKAGES:
        return False
    own_file = getattr(module, "__file__", None) or ""
    if is_within(own_file, _PROJECT_SUBMISSIONS) and not is_within(own_file, scope.folder):
        return False
    locations = [getattr(module, "__file__", None) or ""]
    try:  # a package's folders (some libraries put other objects there)
        locations += [p for p in getattr(module, "__path__", None) or [] if isinstance(p, str)]
    except TypeError:
        pass
    dirs = [scope.folder] + scope.finder.resolved_dirs
    return any(loc and is_within(loc, d) for loc in locations for d in dirs)


def is_within(path: str, folder: str) -> bool:
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def unload_current() -> None:
    """Forget the loaded submission: its modules, its sys.path entries and its finder."""
    global _current
    if _current is None:
        return
    for name in _current.modules | {_current.module_name}:
        sys.modules.pop(name, None)
    for entry in _current.paths:
        if entry in sys.path:
            sys.path.remove(entry)
    if _current.finder in sys.meta_path:
        sys.meta_path.remove(_current.finder)
    _current = None
    importlib.invalidate_caches()


# --- errors that point at the submission's own code ------------------------------------------
def submission_frame(tb: Optional[TracebackType], folder: str
                     ) -> Optional[traceback.FrameSummary]:
    """The innermost frame of ``tb`` in a file under ``folder`` (None: none is)."""
    frames = [f for f in traceback.extract_tb(tb) if is_within(f.filename, folder)]
    return frames[-1] if frames else None


def describe_failure(error: BaseException, folder: Optional[str]) -> str:
    """``Type: message (at file:line in function: code)``, the location being the innermost
    line of the submission's own code; a hint when CUDA is asked for on a machine without it."""
    text = f"{type(error).__name__}: {error}"
    frame = submission_frame(error.__traceback__, folder) if folder else None
    if frame is not None:
        code = f": {frame.line.strip()}" if frame.line else ""
        text += f" (at {_shown(frame.filename)}:{frame.lineno} in {frame.name}{code})"
    if _asks_for_missing_cuda(error):
        text += ("; the submission uses CUDA and this machine has no CUDA device (use the "
                 "device of the parameters, or pytorch_setup()'s device, instead)")
    return text


def _shown(path: str) -> str:
    """A path as the user typed it: relative to the working directory when below it."""
    return os.path.relpath(path) if is_within(path, os.getcwd()) else path


def _asks_for_missing_cuda(error: BaseException) -> bool:
    message = str(error).lower()
    if "cuda" not in message:
        return False
    try:
        import torch
    except ImportError:
        return True
    return not torch.cuda.is_available()
