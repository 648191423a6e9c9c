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

    python -m benchmarks.runner_overhead [--steps 3000] [--repeats 5]
"""
import argparse
import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from algoperf import random_utils, runner
from algoperf.backends.pytorch import PyTorchBackend
from algoperf.search_space import hyperparameters_from_dict
from workloads import registry

RESULTS = os.path.join(os.path.dirname(__file__), "results", "runner_overhead.json")
SUBMISSION = os.path.join(os.path.dirname(__file__), "..", "submissions", "nadamw",
                          "submission.py")
HPARAMS = {"learning_rate": 2e-3, "one_minus_beta1": 0.1, "beta2": 0.999,
           "weight_decay": 0.01, "warmup_factor": 0.05}


def bare_loop(workload, submission, hparams, data_dir, steps, seed) -> float:
    """Seconds per step of a plain PyTorch loop over the same queue, model and optimizer."""
    data_rng, opt_rng, model_rng, _ = random_utils.split(random_utils.PRNGKey(seed), 4)
    queue = workload._build_input_queue(data_rng, "train", data_dir, global_batch_size=16)
    model, _ = workload.init_model_fn(model_rng)
    state = submission.init_optimizer_state(workload, model, None, hparams, opt_rng)
    optimizer, scheduler = state["optimizer"], state["scheduler"]
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(queue)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(batch["inputs"]), batch["targets"])
        loss.backward()
        optimizer.step()
        scheduler.step()
    return (time.perf_counter() - start) / steps


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
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data_dir", default=registry.DEFAULT_GENERATED_DATA_DIR)
    parser.add_argument("--no_save", action="store_true", help="print only")
    args = parser.parse_args()

    workload = registry.get_workload("mnist_tiny")
    # Evals would stop the runner's clock anyway; keep them to the first and last step.
    workload.eval_period_time_sec = float("inf")
    workload.max_allowed_runtime_sec = float("inf")
    workload.validation_target_value = workload.test_target_value = 2.0  # never stop early
    submission = runner.load_submission(SUBMISSION)
    hparams = hyperparameters_from_dict(HPARAMS)
    registry.check_data(workload, args.data_dir)
    bare_loop(workload, submission, hparams, args.data_dir, 200, 0)  # warm-up

    bare, through_runner = [], []
    for repeat in range(args.repeats):
        bare.append(bare_loop(workload, submission, hparams, args.data_dir, args.steps, repeat))
        through_runner.append(runner_loop(workload, submission, hparams, args.data_dir,
                                          args.steps, repeat))
    bare_ms = statistics.median(bare) * 1e3
    runner_ms = statistics.median(through_runner) * 1e3
    ratio = runner_ms / bare_ms
    result = {
        "benchmark": "runner_overhead", "workload": "mnist_tiny", "global_batch_size": 16,
        "steps": args.steps, "repeats": args.repeats,
        "bare_ms_per_step": round(bare_ms, 4), "runner_ms_per_step": round(runner_ms, 4),
        "ratio_runner_over_bare": round(ratio, 4),
        "bare_ms_all": [round(x * 1e3, 4) for x in bare],
        "runner_ms_all": [round(x * 1e3, 4) for x in through_runner],
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"bare loop     {bare_ms:.3f} ms/step")
    print(f"through runner {runner_ms:.3f} ms/step")
    print(f"runner / bare  {ratio:.3f}  (goal <= 1.05)")
    if not args.no_save:
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        with open(RESULTS, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {os.path.relpath(RESULTS)}")


if __name__ == "__main__":
    main()
