"""``algoperf run``: AlgoPerf's submission-runner flags, so users' scripts carry over.

    algoperf run --workload=mnist_tiny --submission_path=submissions/nadamw/submission.py \
        --tuning_search_space=submissions/nadamw/tuning_search_space.json \
        --num_tuning_trials=5 --experiment_dir=experiments --experiment_name=nadamw

Multi-process: ``torchrun --nproc_per_node=N -m algoperf.cli run ...``.
"""
import sys

from absl import flags, logging

from algoperf import clocks, experiment, folder_lock, search_space, submission_loader, tracking
from algoperf.backends import FRAMEWORKS

flags.DEFINE_string("workload", None, "Workload name, e.g. mnist_tiny, imagenet_vit.")
flags.DEFINE_string("submission_path", None, "Path to the submission's submission.py.")
flags.DEFINE_string("tuning_search_space", None, "Path to tuning_search_space.json.")
flags.DEFINE_enum("tuning_ruleset", "external", list(experiment.RULESETS),
                  "external: trials drawn from the search space; self: hyperparameters=None, "
                  "budget x1.5.")
flags.DEFINE_integer("num_tuning_trials", 1, "Tuning trials per study.")
flags.DEFINE_integer("num_studies", 1, "Independent studies (each with its own seeds).")
flags.DEFINE_integer("hparam_start_index", None, "First trial index (0-based) to run.")
flags.DEFINE_integer("hparam_end_index", None, "One past the last trial index to run.")
flags.DEFINE_string("experiment_dir", None, "Root folder for logs.")
flags.DEFINE_string("experiment_name", "experiment", "Sub-folder of --experiment_dir.")
flags.DEFINE_enum("framework", "pytorch", list(FRAMEWORKS), "Framework implementation.")
flags.DEFINE_enum("jax_layout", "auto", ["auto", "jit", "pmap"],
                  "JAX: how arrays reach the submission. jit: global arrays on the device mesh "
                  "(AlgoPerf today); pmap: a leading device axis (AlgoPerf's pmap generation); "
                  "auto: pmap if the submission's code uses pmap.")
flags.DEFINE_enum("clock", None, list(clocks.CLOCKS),
                  "What submission time is measured on (algoperf.clocks): wall (AlgoPerf's "
                  "rule) or process_cpu (this process's CPU seconds); default: the workload's "
                  "(wall, the _tiny tier process_cpu).")
flags.DEFINE_integer("rng_seed", None, "Seed of every random choice; drawn and logged if unset.")
flags.DEFINE_integer("max_global_steps", None, "Stop each trial after this many steps.")
flags.DEFINE_boolean("resume_last_run", False, "Continue killed trials from their checkpoints.")
flags.DEFINE_boolean("overwrite", False, "Delete existing trials in the experiment folder.")
flags.DEFINE_boolean("save_checkpoints", True, "Checkpoint at every eval (for resuming).")
flags.DEFINE_string("data_dir", None, "Prepared dataset folder (tiny tier: generated here).")
flags.DEFINE_string("imagenet_v2_data_dir", None, "Prepared ImageNet-v2 folder (test split).")
tracking.define_flags("Log every eval, the hyperparameters and the metadata of each trial to "
                      "Weights & Biases (one run per trial; needs '.[tracking]').")

FLAGS = flags.FLAGS


def main(argv) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.INFO)
    for name in ("workload", "submission_path"):
        if not FLAGS[name].value:
            _fail(f"--{name} is required")
    try:
        tracking.require(FLAGS.flag_values_dict())
    except tracking.TrackingError as error:
        _fail(str(error))
    config = experiment.ExperimentConfig(
        workload=FLAGS.workload, submission_path=FLAGS.submission_path,
        experiment_dir=FLAGS.experiment_dir, experiment_name=FLAGS.experiment_name,
        framework=FLAGS.framework, jax_layout=FLAGS.jax_layout, clock=FLAGS.clock,
        tuning_ruleset=FLAGS.tuning_ruleset,
        tuning_search_space=FLAGS.tuning_search_space,
        num_tuning_trials=FLAGS.num_tuning_trials, num_studies=FLAGS.num_studies,
        rng_seed=FLAGS.rng_seed, data_dir=FLAGS.data_dir,
        imagenet_v2_data_dir=FLAGS.imagenet_v2_data_dir,
        max_global_steps=FLAGS.max_global_steps, resume_last_run=FLAGS.resume_last_run,
        overwrite=FLAGS.overwrite, save_checkpoints=FLAGS.save_checkpoints,
        hparam_start_index=FLAGS.hparam_start_index, hparam_end_index=FLAGS.hparam_end_index,
        flags=FLAGS.flag_values_dict())
    try:
        results = experiment.run_experiment(config)
    except folder_lock.FolderInUseError as error:
        _fail(str(error), folder_lock.EXIT_IN_USE)
    except (experiment.ExperimentError, submission_loader.SubmissionError,
            search_space.SearchSpaceError, FileNotFoundError, NotImplementedError,
            ValueError) as error:
        _fail(str(error))
    except OSError as error:  # a full disk, a read-only folder: the harness cannot write logs
        where = f" {error.filename}" if error.filename else ""
        _fail(f"cannot write the logs{where}: {error.strerror or error}")
    if results and all(r.failed for r in results):
        _fail("every trial failed (reasons above and in each trial's failed.json)")


def _fail(message: str, status: int = 1) -> None:
    print(f"algoperf run: error: {message}", file=sys.stderr)
    sys.exit(status)
