"""The plan of a suite: one ``TrialSpec`` per (submission, workload, study, trial).

    <output_dir>/<ruleset>_tuning/<submission>/study_<j>/<workload>_pytorch/trial_<k>/

is where trial k of study j logs, the layout of AlgoPerf's official runs, so ``scoring`` reads
the ruleset folder as is. Study j of the whole suite gets the seed
``to_int(fold_in(PRNGKey(rng_seed), j))`` (the same as ``algoperf benchmark``), and trial k is
point k-1 of that study's Halton draw of ``num_trials`` points: a trial run alone in its own
process logs exactly what it would have logged inside one long ``algoperf run``.

A trial's state is read from its folder alone (so a re-run of the suite, a Slurm requeue, or a
person looking at the folder all agree):

    DONE_FILE (``suite_done.json``)   -> done      (written after the trial's process exits 0)
    failed.json                       -> failed    (the runner's record, or the suite's)
    folder exists, neither file       -> partial   (interrupted: resumed with --resume_last_run)
    no folder                         -> pending
"""
import ast
import dataclasses
import json
import os
from typing import List, Optional, Sequence

from algoperf import logger_utils, random_utils
from algoperf.backends import FRAMEWORKS

DONE_FILE = "suite_done.json"
OUTPUT_FILE = "suite_output.log"
RULESET_DIRS = {"external": "external_tuning", "self": "self_tuning"}
REPO_SUBMISSIONS_DIR = os.path.normpath(
    os.path.join(os.path.dirname(__file__), "..", "..", "submissions"))
SEARCH_SPACE_FILE = "tuning_search_space.json"
# Beside it, optional: the search space for the _tiny tier, whose budgets are seconds and whose
# step_hints are hundreds of steps (the full-size spaces are AlgoPerf's, tuned for real budgets).
TINY_SEARCH_SPACE_FILE = "tuning_search_space_tiny.json"
SUBMISSION_FILE = "submission.py"
STATES = ("done", "failed", "partial", "pending")


class SuiteError(ValueError):
    """A bad flag or folder of the suite, reported as one line before any trial runs."""


@dataclasses.dataclass(frozen=True)
class TrialSpec:
    """Everything that names one trial and where it logs (picklable: Slurm jobs carry it)."""
    submission: str
    workload: str
    study: int
    trial: int              # 1-based, as AlgoPerf numbers trials
    submission_path: str
    search_space_path: Optional[str]
    runs_dir: str           # <output_dir>/<ruleset>_tuning
    study_seed: int
    num_trials: int         # points drawn per study; this trial takes point trial-1
    tuning_ruleset: str = "external"
    framework: str = "pytorch"

    @property
    def experiment_name(self) -> str:
        return f"{self.submission}/study_{self.study}"

    @property
    def trial_dir(self) -> str:
        return os.path.join(self.runs_dir, self.submission, f"study_{self.study}",
                            f"{self.workload}_{self.framework}", f"trial_{self.trial}")

    @property
    def label(self) -> str:
        return f"{self.submission}/{self.workload}/study_{self.study}/trial_{self.trial}"


def submission_file(folder: str, framework: str) -> Optional[str]:
    """A submission folder's file for ``framework``: ``<folder>/<framework>/submission.py``
    (AlgoPerf's layout for a submission in two frameworks), else the ``submission.py`` at its
    top when it is written for ``framework`` (None: the folder has none for that framework)."""
    nested = os.path.join(folder, framework, SUBMISSION_FILE)
    if os.path.isfile(nested):
        return nested
    top = os.path.join(folder, SUBMISSION_FILE)
    return top if os.path.isfile(top) and framework_of(top) == framework else None


def framework_of(path: str) -> str:
    """'jax' for a file that imports jax, flax or optax and not torch, else 'pytorch' (the
    leaderboards' one-framework folders hold a top-level submission.py of either)."""
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return "pytorch"  # loading it will say what is wrong
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
    return "jax" if imported & {"jax", "flax", "optax"} and "torch" not in imported \
        else "pytorch"


def submission_root(submission_path: str) -> str:
    """The folder a submission's search spaces sit in: its file's folder, or the one above
    when the file is a framework's (``<folder>/jax/submission.py``)."""
    folder = os.path.dirname(os.path.abspath(submission_path))
    return os.path.dirname(folder) if os.path.basename(folder) in FRAMEWORKS else folder


def shipped_submissions(submissions_dir: str = REPO_SUBMISSIONS_DIR,
                        framework: str = "pytorch") -> List[str]:
    """Every folder with a submission for ``framework`` and a tuning_search_space.json."""
    if not os.path.isdir(submissions_dir):
        raise SuiteError(f"--submissions_dir={submissions_dir}: no such folder")
    return sorted(name for name in os.listdir(submissions_dir)
                  if submission_file(os.path.join(submissions_dir, name), framework)
                  and os.path.isfile(os.path.join(submissions_dir, name, SEARCH_SPACE_FILE)))


def tiny_workloads() -> List[str]:
    """Every registered ``_tiny`` workload, read from the registry at run time."""
    from workloads import registry
    return [name for name in registry.names() if name.endswith("_tiny")]


def study_seed(rng_seed: int, study: int) -> int:
    return random_utils.to_int(random_utils.fold_in(random_utils.PRNGKey(rng_seed), study))


def make_plan(output_dir: str, submissions: Sequence[str], workloads: Sequence[str],
              num_studies: int, num_trials: int, rng_seed: int = 0,
              submissions_dir: str = REPO_SUBMISSIONS_DIR,
              tuning_ruleset: str = "external",
              frameworks: Sequence[str] = ("pytorch",)) -> List[TrialSpec]:
    """submissions x frameworks x workloads x studies x trials, in that nesting order, checked
    up front. Logs of both frameworks share the submission's folder, as in AlgoPerf:
    ``<workload>_pytorch/`` beside ``<workload>_jax/``."""
    if num_studies < 1:
        raise SuiteError(f"--num_studies={num_studies}: must be >= 1")
    if num_trials < 1:
        raise SuiteError(f"--num_trials={num_trials}: must be >= 1")
    if tuning_ruleset not in RULESET_DIRS:
        raise SuiteError(f"--tuning_ruleset={tuning_ruleset!r}: expected one of "
                         f"{', '.join(RULESET_DIRS)}")
    if tuning_ruleset == "self" and num_trials != 1:
        raise SuiteError(f"--num_trials={num_trials}: self-tuning runs one trial per study")
    if not submissions:
        raise SuiteError(f"--submissions: none given and no submission folder (submission.py "
                         f"+ {SEARCH_SPACE_FILE}) in {submissions_dir}")
    if not workloads:
        raise SuiteError("--workloads: none given and no _tiny workload is registered")
    _check_workloads(workloads)
    runs_dir = os.path.join(output_dir, RULESET_DIRS[tuning_ruleset])
    plan = []
    for name in submissions:
        for framework in frameworks:
            submission_path, space_path = _submission_files(name, submissions_dir,
                                                            tuning_ruleset, framework)
            for workload in workloads:
                for study in range(num_studies):
                    for trial in range(1, num_trials + 1):
                        plan.append(TrialSpec(
                            submission=os.path.basename(os.path.normpath(name)),
                            workload=workload, study=study, trial=trial,
                            submission_path=submission_path,
                            search_space_path=search_space_for(space_path, workload),
                            runs_dir=runs_dir, study_seed=study_seed(rng_seed, study),
                            num_trials=num_trials, tuning_ruleset=tuning_ruleset,
                            framework=framework))
    return plan


def run_order(trials: Sequence[TrialSpec]) -> List[TrialSpec]:
    """The order in which trials start: framework by framework, study by study, workload by
    workload (the longest budget first), and within a workload each submission in turn.

    Performance profiles compare submissions within one workload, so a workload's trials run
    side by side: the workers run the same workload at once, and a machine whose speed drifts
    over the suite's minutes slows the submissions being compared alike, instead of favouring
    whichever ran in a fast minute. The longest budgets go first so that the short trials are
    left to fill the workers at the end. Unknown workloads (test fixtures) sort last."""
    from workloads import registry

    def budget(workload: str) -> float:
        try:
            return float(registry.get_definition(workload).max_allowed_runtime_sec)
        except registry.UnknownWorkloadError:
            return 0.0
    order = {w: i for i, w in enumerate(sorted({t.workload for t in trials},
                                               key=lambda w: (-budget(w), w)))}
    frameworks = {f: i for i, f in enumerate(dict.fromkeys(t.framework for t in trials))}
    return sorted(trials, key=lambda t: (frameworks[t.framework], t.study, order[t.workload],
                                         t.trial, t.submission))


def _check_workloads(workloads: Sequence[str]) -> None:
    from workloads import registry
    unknown = [w for w in workloads if w not in registry.WORKLOADS]
    if unknown:
        raise SuiteError(f"--workloads: unknown workload(s) {', '.join(unknown)}; known: "
                         f"{', '.join(registry.names())}")


def _submission_files(name: str, submissions_dir: str, tuning_ruleset: str,
                      framework: str = "pytorch"):
    """A submission by name (a folder under --submissions_dir) or by folder path."""
    folder = name if os.path.isdir(name) and os.sep in name else os.path.join(
        submissions_dir, name)
    found = submission_file(folder, framework)
    space_path = os.path.abspath(os.path.join(folder, SEARCH_SPACE_FILE))
    if found is None:
        known = ", ".join(shipped_submissions(submissions_dir, framework)) if os.path.isdir(
            submissions_dir) else "none"
        where = os.path.join(folder, framework, SUBMISSION_FILE)
        raise SuiteError(f"--submissions: {name!r} has no {framework} submission (looked for "
                         f"{where}" + ("" if framework != "pytorch" else
                                       f" and {os.path.join(folder, SUBMISSION_FILE)}")
                         + f"); known: {known}")
    submission_path = os.path.abspath(found)
    if tuning_ruleset == "external" and not os.path.isfile(space_path):
        raise SuiteError(f"--submissions: {folder} has no {SEARCH_SPACE_FILE} (external tuning "
                         "needs one)")
    return submission_path, space_path if tuning_ruleset == "external" else None


def search_space_for(space_path: Optional[str], workload: str) -> Optional[str]:
    """The submission's tuning_search_space_tiny.json for a _tiny workload when it ships one,
    else its tuning_search_space.json (None: self-tuning)."""
    if space_path and workload.endswith("_tiny"):
        tiny = os.path.join(os.path.dirname(space_path), TINY_SEARCH_SPACE_FILE)
        if os.path.isfile(tiny):
            return tiny
    return space_path


def shipped_tiny_points(name: str) -> List[dict]:
    """The points of shipped submission ``name``'s tuning_search_space_tiny.json, in trial
    order (trial k runs point k; the first is the one ``make suite`` runs)."""
    with open(os.path.join(REPO_SUBMISSIONS_DIR, name, TINY_SEARCH_SPACE_FILE)) as f:
        return json.load(f)


def trial_state(spec: TrialSpec) -> str:
    """done | failed | partial | pending, from the trial's folder (see the module docstring)."""
    if os.path.exists(os.path.join(spec.trial_dir, DONE_FILE)):
        return "done"
    if os.path.exists(os.path.join(spec.trial_dir, logger_utils.FAILED_FILE)):
        return "failed"
    if os.path.isdir(spec.trial_dir):
        return "partial"
    return "pending"
