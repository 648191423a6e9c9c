"""``algoperf check``: a one-minute smoke test of a submission on the tiny workloads.

    algoperf check --submission_path=my_submission/submission.py
    algoperf check --submission_path=... --tuning_search_space=... --workloads=mnist_tiny,ogbg_tiny

Prints one line per workload (``ok``, or the first error with the submission's own file and
line) and exits 1 if any failed. What each check runs: ``algoperf.smoke_check``.
"""
import os
import sys
import time

from absl import flags, logging

from algoperf import smoke_check
from algoperf.backends import FRAMEWORKS

flags.DEFINE_string("submission_path", None, "Path to the submission's submission.py.")
flags.DEFINE_string("tuning_search_space", None, "Search space whose first point is used "
                    "(default: the tuning_search_space.json beside the submission; none: "
                    "self-tuning, hyperparameters=None).")
flags.DEFINE_list("workloads", [], "Workloads to check; default: every registered _tiny one.")
flags.DEFINE_enum("framework", "pytorch", list(FRAMEWORKS), "Framework implementation.")
flags.DEFINE_string("data_dir", None, "Prepared / generated data (default: the user cache).")
flags.DEFINE_boolean("verbose", False, "Show the runs' own log lines.")

FLAGS = flags.FLAGS


def main(argv) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.submission_path:
        _fail("--submission_path is required")
    logging.set_verbosity(logging.INFO if FLAGS.verbose else logging.FATAL)
    from algoperf.suite.plan import tiny_workloads
    workloads = FLAGS.workloads or tiny_workloads()
    space = FLAGS.tuning_search_space or smoke_check.default_search_space(FLAGS.submission_path)
    if space and not os.path.isfile(space):
        _fail(f"--tuning_search_space: no such file: {space}")
    print(f"algoperf check: {FLAGS.submission_path} ({FLAGS.framework}; "
          + (f"first point of {space}, or of its _tiny file on a tiny workload" if space
             else "self-tuning: hyperparameters=None") + ")", flush=True)
    width = max(len(w) for w in workloads)
    start = time.time()

    def show(result: smoke_check.CheckResult) -> None:
        print(f"  {result.workload:<{width}}  {result.seconds:5.1f}s  {result.message}",
              flush=True)

    results = smoke_check.check(FLAGS.submission_path, workloads, space, FLAGS.framework,
                                FLAGS.data_dir, on_result=show)
    good = sum(r.ok for r in results)
    print(f"algoperf check: {good} of {len(results)} workloads ok in "
          f"{time.time() - start:.1f}s", flush=True)
    if good < len(results):
        sys.exit(1)


def _fail(message: str) -> None:
    print(f"algoperf check: error: {message}", file=sys.stderr)
    sys.exit(2)
