"""Amortised step time and peak memory of NAdamW, K-FAC-reduce and K-FAC-expand at full size.

On the full-size models (imagenet_vit: ViT-S/16; cifar_wrn: WRN-16-4) at the baselines'
global batch (``get_batch_size``: 1024 and 128), on generated batches of the real shapes
(ViT: uint8 [B, 224, 224, 3] images, WRN: standardised float32 [B, 32, 32, 3]; labels
uniform), through the submissions' own ``update_params``:

    ms/step   the mean over ``--steps`` consecutive steps after ``--warmup`` steps, so that
              K-FAC's factor updates (reduce every step, expand every 3) and inverses (every
              10) count at their real frequency; each submission at the first point of its
              tiny search space (the cadence the tiny tier runs)
    peak MiB  torch.cuda.max_memory_allocated over the timed steps (None on CPU)

Ratios: K-FAC / NAdamW and expand / reduce, measured in one run. Meant for a GPU machine
(one device, no DDP); on a CPU, pass a small ``--batch`` to check that it runs.

    python -m benchmarks.kfac_step_time [--workloads imagenet_vit,cifar_wrn] [--steps 30]

Results go to ``benchmarks/results/kfac_step_time.json`` (merged by workload).
"""
import argparse
import os
import time
from typing import Callable, Dict, Optional

import numpy as np
import torch

from algoperf import random_utils, runner, submission_loader
from algoperf.search_space import hyperparameters_from_dict
from algoperf.suite.plan import shipped_tiny_points
from workloads import registry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBMISSIONS = ("nadamw", "kfac_reduce", "kfac_expand")
KFAC_SUBMISSIONS = ("kfac_reduce", "kfac_expand")

# workload -> (workload, batch size, numpy generator) -> a host batch as its loader yields it.
HOST_BATCHES: Dict[str, Callable] = {
    "imagenet_vit": lambda w, b, g: {
        "inputs": g.integers(0, 256, (b, w.center_crop_size, w.center_crop_size, 3),
                             dtype=np.uint8),
        "targets": g.integers(0, w.num_classes, b, dtype=np.int64)},
    "cifar_wrn": lambda w, b, g: {
        "inputs": g.standard_normal((b, 32, 32, 3), dtype=np.float32),
        "targets": g.integers(0, 10, b, dtype=np.int64)},
}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(workload_name: str, name: str, steps: int, warmup: int,
            batch_size: Optional[int]) -> Dict:
    workload = registry.get_workload(workload_name)
    submission = submission_loader.load_submission(
        os.path.join(REPO, "submissions", name, "submission.py"))
    batch_size = batch_size or runner.global_batch_size_for(submission, workload)
    rng = np.random.default_rng(0)
    batches = [workload._model_batch(HOST_BATCHES[workload_name](workload, batch_size, rng),
                                     True, rng) for _ in range(2)]
    hp = hyperparameters_from_dict(shipped_tiny_points(name)[0])
    params, model_state = workload.init_model_fn(random_utils.PRNGKey(0))
    state = submission.init_optimizer_state(workload, params, model_state, hp,
                                            random_utils.PRNGKey(1))

    def step(i: int) -> None:
        nonlocal state, params, model_state
        state, params, model_state = submission.update_params(
            workload, params, workload.model_params_types, model_state, hp, batches[i % 2],
            workload.loss_type, state, [], i, random_utils.PRNGKey(i))

    for i in range(warmup):
        step(i)
    _sync()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    _sync()
    seconds = (time.perf_counter() - start) / steps
    peak = (torch.cuda.max_memory_allocated() / 2 ** 20 if torch.cuda.is_available()
            else None)
    return {"ms_per_step": round(1e3 * seconds, 2),
            "peak_mib": None if peak is None else round(peak, 1), "batch_size": batch_size}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(HOST_BATCHES))
    parser.add_argument("--steps", type=int, default=30, help="timed steps per submission")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None,
                        help="global batch (default: the baselines' get_batch_size)")
    parser.add_argument("--no_save", action="store_true")
    args = parser.parse_args(argv)
    workloads = args.workloads.split(",")
    unknown = sorted(set(workloads) - set(HOST_BATCHES))
    if unknown:
        parser.error(f"--workloads: no generated batch for {unknown}; known: "
                     f"{sorted(HOST_BATCHES)}")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    results = {}
    for w in workloads:
        by_name = {n: measure(w, n, args.steps, args.warmup, args.batch) for n in SUBMISSIONS}
        ms = {n: r["ms_per_step"] for n, r in by_name.items()}
        results[w] = {"submissions": by_name, "device": device, "steps": args.steps,
                      "step_time_over_nadamw": {n: round(ms[n] / ms["nadamw"], 3)
                                                for n in KFAC_SUBMISSIONS},
                      "expand_over_reduce": round(ms["kfac_expand"] / ms["kfac_reduce"], 3),
                      "points": {n: shipped_tiny_points(n)[0] for n in SUBMISSIONS}}
        print(f"{w} on {device}: " + ", ".join(
            f"{n} {r['ms_per_step']} ms/step (peak {r['peak_mib']} MiB)"
            for n, r in by_name.items())
            + f"; K-FAC / NAdamW {results[w]['step_time_over_nadamw']}, expand / reduce "
              f"{results[w]['expand_over_reduce']}", flush=True)
    if args.no_save:
        return
    from benchmarks import results_io
    results_io.save("kfac_step_time", {"workloads": results}, merge_into="workloads")


if __name__ == "__main__":
    main()
