"""``algoperf benchmark``: the small benchmark, end to end on a laptop CPU.

Runs every baseline on the default ``_tiny`` workloads (external tuning: ``--num_studies``
studies of ``--num_tuning_trials`` Halton-drawn points each, logged as official runs name them,
``<output_dir>/runs/<submission>/study_<j>/<workload>_pytorch/trial_<k>``), then scores the
runs with ``scoring``: the terminal table, CSVs, the performance-profile plot and a report.
"""
import os
import sys

from absl import flags, logging

from algoperf import experiment, random_utils

BASELINES = ("adamw", "nadamw", "sgd_nesterov")
# The default set runs serially in minutes on two cores. Other _tiny workloads take ~1-2 min
# a trial; they join the default with issue 9's parallel suite. Any can be named by flag.
DEFAULT_WORKLOADS = ("mnist_tiny",)
SUBMISSIONS_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "submissions")

flags.DEFINE_string("output_dir", "experiments/tiny_benchmark", "Runs and scores go here.")
flags.DEFINE_list("workloads", list(DEFAULT_WORKLOADS),
                  "Workloads to run (e.g. mnist_tiny,cifar_wrn_tiny; see `tiny_workloads()`).")
flags.DEFINE_list("submissions", list(BASELINES), "Baselines under submissions/ to run.")
flags.DEFINE_integer("num_studies", 3, "Studies per submission and workload (the score takes "
                     "the median over studies, so use an odd number).")
flags.DEFINE_integer("num_tuning_trials", 3, "Tuning trials per study.")
flags.DEFINE_integer("rng_seed", 0, "Seed of the whole benchmark.")
flags.DEFINE_string("data_dir", None, "Where generated data lives (default: the user cache).")
flags.DEFINE_boolean("resume_last_run", False, "Continue an interrupted benchmark.")
flags.DEFINE_boolean("overwrite", False, "Delete earlier runs in --output_dir first.")
flags.DEFINE_boolean("score_only", False, "Only score the runs already in --output_dir.")

FLAGS = flags.FLAGS


def tiny_workloads():
    """Every registered _tiny workload (pass them with --workloads)."""
    from workloads import registry
    return [name for name in registry.names() if name.endswith("_tiny")]


def run_all(runs_dir: str, workloads, submissions) -> None:
    for submission in submissions:
        folder = os.path.join(SUBMISSIONS_DIR, submission)
        for workload in workloads:
            for study in range(FLAGS.num_studies):
                seed = random_utils.to_int(random_utils.fold_in(
                    random_utils.PRNGKey(FLAGS.rng_seed), study))
                logging.info("== %s on %s, study %d ==", submission, workload, study)
                experiment.run_experiment(experiment.ExperimentConfig(
                    workload=workload, submission_path=os.path.join(folder, "submission.py"),
                    tuning_search_space=os.path.join(folder, "tuning_search_space.json"),
                    num_tuning_trials=FLAGS.num_tuning_trials,
                    experiment_dir=runs_dir, experiment_name=f"{submission}/study_{study}",
                    rng_seed=seed, data_dir=FLAGS.data_dir,
                    resume_last_run=FLAGS.resume_last_run, overwrite=FLAGS.overwrite,
                    flags=FLAGS.flag_values_dict()))


def score_all(runs_dir: str, scores_dir: str, workloads) -> None:
    from algoperf.suite.scores import score_folder  # shared with `algoperf suite`
    score_folder(runs_dir, scores_dir, workloads, FLAGS.num_studies, FLAGS.num_tuning_trials,
                 "Tiny-tier benchmark (CPU)")


def main(argv) -> None:
    if len(argv) > 1:
        print(f"algoperf benchmark: error: unexpected arguments {' '.join(argv[1:])}",
              file=sys.stderr)
        sys.exit(2)
    logging.set_verbosity(logging.INFO)
    workloads = FLAGS.workloads
    runs_dir = os.path.join(FLAGS.output_dir, "runs")
    try:
        if not FLAGS.score_only:
            run_all(runs_dir, workloads, FLAGS.submissions)
        score_all(runs_dir, os.path.join(FLAGS.output_dir, "scores"), workloads)
    except (experiment.ExperimentError, ValueError, FileNotFoundError) as error:
        print(f"algoperf benchmark: error: {error}", file=sys.stderr)
        sys.exit(1)
