"""``algoperf score``: score a folder of logged runs (flag names follow AlgoPerf's
``score_submissions.py`` where it has one).

    algoperf score --submission_directory=logs/external_tuning \\
        --targets_file=workload_targets_v05.json --output_dir=scoring_results

Prints the scores and the time-to-target table, and writes CSVs, the performance-profile plot
(PNG and PDF), per-submission summaries and ``report.md`` to ``--output_dir``. A folder or file
that cannot be scored gives one line naming it and exit status 1.
"""
import os
import sys

from absl import flags

flags.DEFINE_string("submission_directory", None,
                    "Folder of runs: <submission>/study_<j>/<workload>_<framework>/trial_<k>/.")
flags.DEFINE_string("output_dir", "scoring_results", "Where tables, plot and report go.")
flags.DEFINE_string("targets_file", None,
                    "Frozen targets JSON (format of AlgoPerf's workload_targets_v05.json). "
                    "Default: the targets of this project's workload registry.")
flags.DEFINE_boolean("compute_performance_profiles", True,
                     "Compute and plot performance profiles and print scores; with "
                     "--nocompute_performance_profiles only time-to-target tables.")
flags.DEFINE_boolean("strict", False,
                     "Missing studies, trials or workloads are an error, not a note.")
flags.DEFINE_boolean("self_tuning_ruleset", False,
                     "Self-tuning ruleset: one trial per study is expected.")
flags.DEFINE_list("base_workloads", None, "Base workloads to score (default: targets file's).")
flags.DEFINE_list("held_out_workloads", None,
                  "Held-out variants (default: targets file's; ignored with --noheld_out).")
flags.DEFINE_boolean("held_out", True,
                     "Apply AlgoPerf v0.5's held-out rules (variants and the 4x rule); "
                     "--noheld_out scores base workloads only (v0.6 style).")
flags.DEFINE_float("held_out_max_ratio", 4.0,
                   "Held-out rule: times more than this many times the best become infinite.")
flags.DEFINE_float("r_max", 4.0, "Upper end of the performance profile's tau range.")
flags.DEFINE_enum("integral", "trapezoid", ["trapezoid", "exact"],
                  "trapezoid: AlgoPerf's 100-point rule (published numbers); exact: the exact "
                  "area under the step function.")
flags.DEFINE_integer("num_points", 100, "Points of the trapezoid rule's tau grid.")
flags.DEFINE_string("reference_submission", None,
                    "Take ratios to this submission's times instead of the best per workload.")
flags.DEFINE_list("submissions", None, "Score only these submissions (default: all).")
flags.DEFINE_integer("num_studies", 5, "Studies expected per submission (checks).")
flags.DEFINE_integer("num_trials", None,
                     "Trials expected per study and workload (default 5, self-tuning 1).")
flags.DEFINE_integer("bootstrap_samples", 1000,
                     "Bootstrap replicates over studies for confidence intervals; 0: none.")
flags.DEFINE_float("confidence", 0.95, "Confidence level of the bootstrap intervals.")
flags.DEFINE_integer("seed", 0, "Seed of the bootstrap.")
flags.DEFINE_string("time_column", "score", "Column of eval_measurements.csv used as time.")
flags.DEFINE_boolean("ignore_unknown_workloads", False,
                     "Skip workload folders without a target instead of failing.")
flags.DEFINE_string("title", None, "Title of the plot and the report.")

FLAGS = flags.FLAGS


def config_from_flags():
    from scoring.api import ScoringConfig
    return ScoringConfig(
        base_workloads=FLAGS.base_workloads, held_out_workloads=FLAGS.held_out_workloads,
        held_out=FLAGS.held_out, max_ratio=FLAGS.held_out_max_ratio, r_max=FLAGS.r_max,
        integral=FLAGS.integral, num_points=FLAGS.num_points,
        reference_submission=FLAGS.reference_submission,
        self_tuning_ruleset=FLAGS.self_tuning_ruleset, strict=FLAGS.strict,
        num_studies=FLAGS.num_studies, num_trials=FLAGS.num_trials,
        submissions=FLAGS.submissions,
        bootstrap_samples=FLAGS.bootstrap_samples if FLAGS.compute_performance_profiles else 0,
        confidence=FLAGS.confidence, seed=FLAGS.seed)


def fail(message: str, status: int = 1) -> None:
    print(f"algoperf score: error: {message}", file=sys.stderr)
    sys.exit(status)


def main(argv) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments {' '.join(argv[1:])} (all options are --flags)", 2)
    if not FLAGS.submission_directory:
        fail("--submission_directory is required", 2)
    from scoring import api, report
    from scoring.errors import ScoringInputError
    try:
        config = config_from_flags()
    except ValueError as e:
        fail(str(e), 2)
    try:
        result = api.score(FLAGS.submission_directory, FLAGS.targets_file, config,
                           time_column=FLAGS.time_column,
                           ignore_unknown_workloads=FLAGS.ignore_unknown_workloads)
    except ScoringInputError as e:
        fail(str(e))
    title = FLAGS.title or default_title(FLAGS.submission_directory)
    print(report.terminal_report(result, scores=FLAGS.compute_performance_profiles))
    paths = report.write_report(result, FLAGS.output_dir, title,
                                plot=FLAGS.compute_performance_profiles)
    print(f"\nWrote {os.path.join(FLAGS.output_dir, 'report.md')} and {len(paths) - 1} more "
          f"files in {FLAGS.output_dir}/ (scores.csv, trials.csv, summaries/, ...)")


def default_title(directory: str) -> str:
    name = os.path.basename(os.path.normpath(os.path.abspath(directory)))
    return f"AlgoPerf scores: {name}"
