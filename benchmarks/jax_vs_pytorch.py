"""JAX vs PyTorch: the NAdamW baseline's training step on each tiny workload, in one run.

For each workload both frameworks' workloads get the same training batch of the shared data
layer (at the baseline's batch size) and their NAdamW submission's ``update_params``:

    compile     JAX: the first step (tracing + XLA compilation of the jitted step) minus a
                steady step; on the clock under AlgoPerf's rules, so it is part of every
                trial's time to target. PyTorch's first step is reported beside it.
    step        median of ``repeats`` steady steps, each waited for (JAX dispatches
                asynchronously: the timer blocks on the returned arrays)
    ratio       JAX step / PyTorch step

Both frameworks run on one CPU core (the process pinned to it, torch.set_num_threads(1)), the
project's CPU timing convention: ratios, not absolute times, are the result; run it on an
idle machine. A GPU machine (``--threads 0``: each framework's default) gives the full-size
picture.

    python -m benchmarks.jax_vs_pytorch [--repeats 20] [--workloads mnist_tiny,ogbg_tiny]
"""
import argparse
import os
import statistics
import sys
import time


def _configure_threads(threads: int) -> None:
    """The process is pinned to ``threads`` cores before JAX starts: XLA's CPU pools ignore
    ``intra_op_parallelism_threads`` here (a 2000x2000 matmul took the same 3.9 s with and
    without it on two cores, 7.7 s pinned to one), and size themselves from the affinity."""
    if threads > 0:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))


def time_framework(name: str, framework: str, data_dir: str, repeats: int):
    import jax

    from algoperf import random_utils, submission_loader
    from algoperf.backends import get_backend
    from algoperf.runner import global_batch_size_for
    from algoperf.search_space import draw_hyperparameters, load_search_space
    from workloads import registry

    folder = os.path.join(os.path.dirname(__file__), "..", "submissions", "nadamw")
    submission = submission_loader.load_submission(os.path.join(
        folder, "jax", "submission.py") if framework == "jax" else os.path.join(
        folder, "submission.py"))
    (hp,) = draw_hyperparameters(load_search_space(
        os.path.join(folder, "tuning_search_space_tiny.json")), 1, seed=0)
    workload = registry.get_workload(name, framework, get_backend(framework))
    registry.check_data(workload, data_dir)
    batch_size = global_batch_size_for(submission, workload)
    rng = random_utils.PRNGKey(0)
    params, state = workload.init_model_fn(rng)
    batch = next(workload._build_input_queue(rng, "train", data_dir, batch_size))
    opt = submission.init_optimizer_state(workload, params, state, hp, rng)
    workload.attach_metrics_logger(None)

    def step(global_step):
        nonlocal opt, params, state
        start = time.perf_counter()
        opt, params, state = submission.update_params(
            workload, params, workload.model_params_types, state, hp, batch,
            workload.loss_type, opt, [], global_step, rng)
        if framework == "jax":
            jax.block_until_ready((params, opt[0], state))
        return time.perf_counter() - start

    first = step(1000)  # a step number past should_log's every-step logging
    times = [step(1001 + i) for i in range(repeats)]
    return first, statistics.median(times), batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--workloads",
                        default="mnist_tiny,cifar_wrn_tiny,ogbg_tiny,imagenet_vit_tiny")
    parser.add_argument("--threads", type=int, default=1, help="0: the frameworks' defaults")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--no_save", action="store_true")
    args = parser.parse_args()
    _configure_threads(args.threads)
    import torch
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from benchmarks import results_io
    from workloads import registry
    rows = []
    for name in args.workloads.split(","):
        data_dir = args.data_dir or registry.resolve_data_dir(registry.get_definition(name),
                                                              None)
        (torch_first, torch_step, batch) = time_framework(name, "pytorch", data_dir,
                                                          args.repeats)
        (jax_first, jax_step, _) = time_framework(name, "jax", data_dir, args.repeats)
        row = {"workload": name, "batch": batch,
               "pytorch_step_ms": round(torch_step * 1e3, 2),
               "jax_step_ms": round(jax_step * 1e3, 2),
               "ratio_jax_over_pytorch": round(jax_step / torch_step, 2),
               "jax_compile_s": round(jax_first - jax_step, 2),
               "pytorch_first_step_s": round(torch_first, 3)}
        rows.append(row)
        print(f"{name:<18} batch {batch:<5} PyTorch {row['pytorch_step_ms']:8.2f} ms | JAX "
              f"{row['jax_step_ms']:8.2f} ms | ratio {row['ratio_jax_over_pytorch']:5.2f} | "
              f"JAX compile {row['jax_compile_s']:6.2f} s (PyTorch first step "
              f"{row['pytorch_first_step_s']:.2f} s)", flush=True)
    if not args.no_save:
        import jax
        results_io.save("jax_vs_pytorch", {
            "repeats": args.repeats, "threads": args.threads, "jax": jax.__version__,
            "rows": rows, "load_average_1min": round(os.getloadavg()[0], 2),
            "command": " ".join(["python -m benchmarks.jax_vs_pytorch"] + sys.argv[1:])})


if __name__ == "__main__":
    main()
