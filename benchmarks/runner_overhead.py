"""Harness overhead: time per training step through the runner vs a bare PyTorch loop.

Both loops train the same model (mnist_tiny's MLP), on the same batches (the workload's own
input queue, global batch 16 as AlgoPerf's NAdamW baseline uses for MNIST), with the same
optimizer and schedule (our NAdamW baseline at fixed hyperparameters):

    bare:    batch = next(queue); zero_grad; loss = CE(model(x), y); backward; step; sched.step
    runner:  train_once(...) with the submission's data_selection + update_params, timed by
             the runner's own clock (accumulated submission time / steps)

The runner's number therefore includes everything the harness adds to a step: per-step
seeds, the submission API (model_fn, loss_fn dicts), train_state, the clock and the eval
check. Repeats alternate bare/runner so drifting machine load hits both; the median is kept.

Three loops: bare; the runner around the bare step (the harness alone); the runner with
the real NAdamW submission (harness + submission API + the baseline's own logging).

    python -m benchmarks.runner_overhead [--steps 1000] [--repeats 15] [--threads 1]
"""
import argparse
import os
import statistics
import time
import types

import torch
import torch.nn.functional as F

from benchmarks import results_io
from algoperf import random_utils, runner, submission_loader
from algoperf.backends.pytorch import PyTorchBackend
from algoperf.search_space import hyperparameters_from_dict
from workloads import registry

SUBMISSION = os.path.join(os.path.dirname(__file__), "..", "submissions", "nadamw",
                          "submission.py")
HPARAMS = {"learning_rate": 2e-3, "one_minus_beta1": 0.1, "beta2": 0.999,
           "weight_decay": 0.01, "warmup_factor": 0.05}


def bare_step(optimizer_state, model, batch) -> None:
    optimizer_state["optimizer"].zero_grad()
    loss = F.cross_entropy(model(batch["inputs"]), batch["targets"])
    loss.backward()
    optimizer_state["optimizer"].step()
    optimizer_state["scheduler"].step()


def bare_loop(workload, submission, hparams, data_dir, steps, seed) -> float:
    """Seconds per step of a plain PyTorch loop over the same queue, model and optimizer."""
    data_rng, opt_rng, model_rng, _ = random_utils.split(random_utils.PRNGKey(seed), 4)
    queue = workload._build_input_queue(data_rng, "train", data_dir, global_batch_size=16)
    model, _ = workload.init_model_fn(model_rng)
    state = submission.init_optimizer_state(workload, model, None, hparams, opt_rng)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        bare_step(state, model, next(queue))
    return (time.perf_counter() - start) / steps


def with_bare_update(submission):
    """The submission with ``update_params`` replaced by ``bare_step``: isolates the runner."""
    def update_params(workload, current_param_container, current_params_types, model_state,
                      hyperparameters, batch, loss_type, optimizer_state, eval_results,
                      global_step, rng, train_state=None):
        bare_step(optimizer_state, current_param_container, batch)
        return optimizer_state, current_param_container, model_state
    return types.SimpleNamespace(get_batch_size=submission.get_batch_size,
                                 init_optimizer_state=submission.init_optimizer_state,
                                 data_selection=submission.data_selection,
                                 update_params=update_params)


def runner_loop(workload, submission, hparams, data_dir, steps, seed) -> float:
    """Seconds per step through ``runner.train_once`` (its own submission-time clock)."""
    config = runner.TrialConfig(data_dir=data_dir, max_global_steps=steps,
                                save_checkpoints=False)
    result = runner.train_once(workload, submission, PyTorchBackend(), hparams,
                               random_utils.PRNGKey(seed), None, config)
    assert result.global_step == steps
    return result.accumulated_submission_time / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--data_dir", default=registry.DEFAULT_GENERATED_DATA_DIR)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for both loops. On two cores, handing "
                        "tiny ops between two threads jitters step times by tens of percent, "
                        "which swamps a 5%% signal; one thread measures the harness itself.")
    parser.add_argument("--no_save", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    workload = registry.get_workload("mnist_tiny")
    # Evals would stop the runner's clock anyway; keep them to the first and last step.
    workload.eval_period_time_sec = float("inf")
    workload.eval_period_steps = None  # not the tier's step grid
    workload.max_allowed_runtime_sec = float("inf")
    workload.validation_target_value = workload.test_target_value = 2.0  # never stop early
    submission = submission_loader.load_submission(SUBMISSION)
    hparams = hyperparameters_from_dict(HPARAMS)
    registry.check_data(workload, args.data_dir)
    bare_loop(workload, submission, hparams, args.data_dir, 200, 0)  # warm-up

    loops = {"bare": (bare_loop, submission),
             "runner_bare_step": (runner_loop, with_bare_update(submission)),
             "runner_submission": (runner_loop, submission)}
    times = {name: [] for name in loops}
    for repeat in range(args.repeats):
        # Rotate the order, so slow drifts of the machine hit every loop equally.
        names = list(loops)[repeat % 3:] + list(loops)[:repeat % 3]
        for name in names:
            loop, sub = loops[name]
            times[name].append(loop(workload, sub, hparams, args.data_dir, args.steps, repeat))
    ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    # Interference from other processes only ever adds time: the fastest repeat of each loop
    # is the least disturbed estimate of its own cost.
    fastest = {name: min(t) * 1e3 for name, t in times.items()}
    harness = fastest["runner_bare_step"] / fastest["bare"]
    full = fastest["runner_submission"] / fastest["bare"]
    result = {
        "benchmark": "runner_overhead", "workload": "mnist_tiny", "global_batch_size": 16,
        "steps": args.steps, "repeats": args.repeats,
        "fastest_ms_per_step": {k: round(v, 4) for k, v in fastest.items()},
        "median_ms_per_step": {k: round(v, 4) for k, v in ms.items()},
        "ratio_runner_over_bare": round(harness, 4),
        "ratio_runner_with_submission_api_over_bare": round(full, 4),
        "ratio_runner_over_bare_medians": round(ms["runner_bare_step"] / ms["bare"], 4),
        "all_ms": {k: [round(x * 1e3, 4) for x in t] for k, t in times.items()},
    }
    for name in loops:
        print(f"{name:<18} {fastest[name]:.3f} ms/step fastest, {ms[name]:.3f} median")
    print(f"runner / bare                         {harness:.3f}  (goal <= 1.05)")
    print(f"runner + NAdamW submission API / bare {full:.3f}  (model_fn, loss_fn dicts, "
          "the baseline's per-step logging for its first 100 steps)")
    if not args.no_save:
        results_io.save("runner_overhead", result)


if __name__ == "__main__":
    main()
