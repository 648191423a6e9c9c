"""``algoperf suite``: submissions x workloads x studies x trials, in parallel, then scores.

    algoperf suite                                   # every shipped baseline x every _tiny
    algoperf suite --submissions=nadamw,shampoo --workloads=mnist_tiny --num_studies=3 \
        --num_trials=5 --num_workers=2
    algoperf suite --executor=slurm --slurm_partition=gpu --gpus_per_job=8 ...

Logs go to ``<output_dir>/<ruleset>_tuning/<submission>/study_<j>/<workload>_pytorch/
trial_<k>/`` (AlgoPerf's layout); scores, report and performance-profile plot to
``<output_dir>/scores/``. Re-running the same command skips finished trials and resumes
interrupted ones (``algoperf.suite.plan`` says how a trial's state is read from its folder).
"""
import os
import sys

from absl import flags, logging

from algoperf import clocks, folder_lock, tracking
from algoperf.suite import driver, plan
from algoperf.suite.task import TrialTask

flags.DEFINE_string("output_dir", "experiments/tiny_suite", "Runs and scores go here.")
flags.DEFINE_list("submissions", [], "Submission folders under --submissions_dir (or paths to "
                  "folders); default: every one with submission.py + tuning_search_space.json.")
flags.DEFINE_string("submissions_dir", plan.REPO_SUBMISSIONS_DIR,
                    "Where --submissions are looked up.")
flags.DEFINE_list("workloads", [], "Workloads to run; default: every registered _tiny workload.")
flags.DEFINE_integer("num_studies", 1, "Studies per submission and workload (the score takes "
                     "the median over studies).")
flags.DEFINE_integer("num_trials", 1, "Tuning trials per study (Halton points of the search "
                     "space; the best trial of a study counts).")
flags.DEFINE_enum("framework", "pytorch", ["pytorch", "jax", "both"],
                  "Frameworks to run each submission in (its <folder>/<framework>/submission.py, "
                  "or for PyTorch its submission.py); both: side by side in the scores.")
flags.DEFINE_enum("tuning_ruleset", "external", list(plan.RULESET_DIRS),
                  "external: points drawn from the search space; self: hyperparameters=None.")
flags.DEFINE_integer("num_workers", os.cpu_count() or 1,
                     "Trials run at once by the local executor, each in its own process with "
                     "cores / num_workers threads.")
flags.DEFINE_boolean("pin_cores", True, "Local executor: pin each worker's trials to its own "
                     "share of the cores (none when there are more workers than cores).")
flags.DEFINE_enum("clock", None, list(clocks.CLOCKS),
                  "What submission time is measured on (algoperf.clocks); default: each "
                  "workload's (wall, the _tiny tier process_cpu).")
flags.DEFINE_integer("rng_seed", 0, "Seed of the whole suite (study j: fold_in(seed, j)).")
flags.DEFINE_string("data_dir", None, "Prepared / generated data (default: the user cache).")
flags.DEFINE_integer("max_global_steps", None, "Stop each trial after this many steps.")
flags.DEFINE_boolean("retry_failed", False, "Run trials that failed before again.")
flags.DEFINE_boolean("score_only", False, "Only score the runs already in --output_dir.")
flags.DEFINE_float("progress_every", 30.0, "Seconds between progress lines.")
flags.DEFINE_enum("executor", "local", ["local", "slurm"],
                  "local: worker processes on this machine; slurm: one Slurm job per trial "
                  "(submitit).")
flags.DEFINE_string("slurm_partition", None, "Slurm partition (--executor=slurm).")
flags.DEFINE_string("slurm_account", None, "Slurm account (--executor=slurm).")
flags.DEFINE_integer("slurm_time_min", 60, "Slurm time limit of one trial's job, minutes; a "
                     "job that hits it is requeued and resumes the trial.")
flags.DEFINE_integer("gpus_per_job", 0, "GPUs of one trial's Slurm job.")
flags.DEFINE_integer("cpus_per_job", 1, "CPUs of one trial's Slurm job.")
tracking.define_flags("Log each trial to Weights & Biases (one run per trial, grouped by "
                      "submission and study) and push the score report.")

FLAGS = flags.FLAGS


def main(argv) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    frameworks = ["pytorch", "jax"] if FLAGS.framework == "both" else [FLAGS.framework]
    try:
        workloads = FLAGS.workloads or plan.tiny_workloads()
        trials = []
        for framework in frameworks:
            submissions = FLAGS.submissions or plan.shipped_submissions(FLAGS.submissions_dir,
                                                                        framework)
            trials += plan.make_plan(FLAGS.output_dir, submissions, workloads,
                                     FLAGS.num_studies, FLAGS.num_trials, FLAGS.rng_seed,
                                     FLAGS.submissions_dir, FLAGS.tuning_ruleset, [framework])
        executor = None if FLAGS.score_only else _executor()
        tracking.require(FLAGS.flag_values_dict())
    except (plan.SuiteError, ValueError) as error:
        _fail(str(error))
    names = sorted({t.submission for t in trials})
    print(f"suite: submissions {', '.join(names)} | workloads {', '.join(workloads)} | "
          f"{', '.join(frameworks)} | {FLAGS.num_studies} studies x {FLAGS.num_trials} trials",
          flush=True)
    if executor is not None:
        try:  # one driver per output folder; its trial processes die with it
            folder_lock.acquire(FLAGS.output_dir)
        except folder_lock.FolderInUseError as error:
            _fail(str(error), folder_lock.EXIT_IN_USE)
        to_run, _ = driver.select(trials, FLAGS.retry_failed)
        if FLAGS.executor == "local" and FLAGS.num_workers > 1:
            print(f"suite: note: {_sharing_note(executor, workloads)}", flush=True)
        _prepare_data(sorted({t.workload for t in to_run}))
        summary = driver.run_plan(trials, _task_factory(), executor, FLAGS.retry_failed,
                                  FLAGS.progress_every)
        if summary.interrupted:
            sys.exit(130)
        print(f"suite: ran {len(summary.outcomes)} trials in "
              f"{driver.format_duration(summary.seconds)} ({len(summary.failed)} failed)",
              flush=True)
        for outcome in summary.failed:
            print(f"suite: FAILED {outcome.spec.label}: {outcome.reason}", flush=True)
        for outcome in summary.in_use:
            print(f"suite: NOT RUN {outcome.spec.label}: {outcome.reason}", flush=True)
        if all(plan.trial_state(t) == "failed" for t in trials):
            _fail(f"every one of the {len(trials)} trials failed (reasons above and in each "
                  "trial's failed.json)")
    _score(trials, workloads)
    if executor is not None and summary.in_use:
        _fail(f"{len(summary.in_use)} trials were not run: another process owns their folders",
              folder_lock.EXIT_IN_USE)


def _executor():
    from algoperf.suite import executors
    if FLAGS.executor == "slurm":
        return executors.SlurmExecutor(
            os.path.join(FLAGS.output_dir, "slurm"), partition=FLAGS.slurm_partition,
            account=FLAGS.slurm_account, time_min=FLAGS.slurm_time_min,
            gpus_per_job=FLAGS.gpus_per_job, cpus_per_job=FLAGS.cpus_per_job)
    return executors.LocalExecutor(FLAGS.num_workers, FLAGS.pin_cores)


def _sharing_note(executor, workloads) -> str:
    """How the trials running at once share this machine, and what that does to the clock."""
    from workloads import registry
    cores = os.cpu_count()
    where = (f"pinned to {len(executor.core_sets[0])} core(s) each" if executor.core_sets
             else "sharing every core")
    on_wall = sorted(name for name in workloads
                     if (FLAGS.clock or registry.get_definition(name).clock) == clocks.WALL)
    clock = (f"the clock is wall time on {', '.join(on_wall)}, so anything else running here "
             "slows those trials (--num_workers=1 on an idle machine for timings you publish)"
             if on_wall else "the clock is each trial's process CPU time (algoperf.clocks)")
    return f"{FLAGS.num_workers} trials at once on {cores} cores, {where}; {clock}"


def _task_factory():
    cores = os.cpu_count() or 1
    threads = FLAGS.cpus_per_job if FLAGS.executor == "slurm" else max(
        1, cores // max(FLAGS.num_workers, 1))
    data_dir = os.path.abspath(FLAGS.data_dir) if FLAGS.data_dir else None

    from algoperf import tracking
    extra = tracking.passthrough_flags(FLAGS.flag_values_dict())
    if FLAGS.clock:
        extra = (*extra, f"--clock={FLAGS.clock}")

    def make_task(spec: plan.TrialSpec) -> TrialTask:
        return TrialTask(spec, data_dir=data_dir, max_global_steps=FLAGS.max_global_steps,
                         num_threads=threads, extra_flags=extra)
    return make_task


def _prepare_data(workloads) -> None:
    """Generate / check each workload's data once here, not in N workers racing to write it."""
    from workloads import registry
    for name in workloads:
        try:
            workload = registry.get_workload(name)
            registry.check_data(workload, registry.resolve_data_dir(workload, FLAGS.data_dir))
        except Exception as error:  # noqa: BLE001 - one line naming the workload, no trial run
            _fail(f"--workloads: {name}: cannot load or prepare its data: "
                  f"{type(error).__name__}: {error}")


def _score(trials, workloads) -> None:
    from algoperf.suite.scores import score_folder
    from scoring.errors import ScoringInputError
    try:
        result, paths = score_folder(trials[0].runs_dir, os.path.join(FLAGS.output_dir, "scores"),
                                     workloads, FLAGS.num_studies, FLAGS.num_trials,
                                     "Benchmark suite", self_tuning=FLAGS.tuning_ruleset == "self")
    except (ScoringInputError, ValueError) as error:
        _fail(f"scoring {trials[0].runs_dir}: {error}")
    if FLAGS.wandb:
        from algoperf import tracking
        tracking.push_scores(FLAGS.flag_values_dict(), result, paths)
        print("suite: score report pushed to W&B (table + performance profile)", flush=True)


def _fail(message: str, status: int = 1) -> None:
    print(f"algoperf suite: error: {message}", file=sys.stderr)
    sys.exit(status)
