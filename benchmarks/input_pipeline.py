"""Input pipeline: batches per second the loader delivers vs steps per second training consumes.

For each case (a workload and a data folder in the real prepared format):

    loader:  t_load = seconds per ``next(input_queue)`` of the workload's own train queue
             (read, augment, collate, move to the device), with no training at all
    step:    t_step = seconds per NAdamW ``update_params`` on one batch, fetched beforehand,
             at the baseline's global batch size (``get_batch_size`` with the base-name retry)

    ratio = (1 / t_load) / (1 / t_step) = t_step / t_load

ratio >= 3 means the loader could feed three trainers: it is not the bottleneck. Our train
queue runs in the training process, so ``t_load`` is also what a run pays per step on top
of ``t_step``: 1 / ratio is the loader's share of the step.

Cases are ``CASES[name]() -> (workload_name, data_dir)``; "full shapes" cases write random
data of the real dataset's sizes and shapes in the real prepared format into a temporary
folder, so that the loader does exactly the work it does on the real dataset.

    python -m benchmarks.input_pipeline [--cases cifar_wrn_tiny,cifar_wrn_full_shapes]

Results are merged by case into ``benchmarks/results/input_pipeline.json``.
"""
import argparse
import atexit
import os
import shutil
import statistics
import tempfile
import time
from typing import Callable, Dict, Tuple

import numpy as np
import torch

from benchmarks import results_io
from algoperf import random_utils, runner, submission_loader
from algoperf.search_space import hyperparameters_from_dict
from workloads import registry

SUBMISSION = os.path.join(os.path.dirname(__file__), "..", "submissions", "nadamw",
                          "submission.py")
HPARAMS = {"learning_rate": 1e-3, "one_minus_beta1": 0.1, "beta2": 0.999,
           "weight_decay": 0.01, "warmup_factor": 0.05}


def scratch_dir(prefix: str) -> str:
    """A temporary data root, removed when the benchmark exits."""
    path = tempfile.mkdtemp(prefix=f"algoperf_bench_{prefix}_")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _generated(workload_name: str) -> Callable[[], Tuple[str, str]]:
    def case():
        workload = registry.get_workload(workload_name)
        data_dir = registry.resolve_data_dir(workload, None)
        registry.check_data(workload, data_dir)  # generates the tiny data once
        return workload_name, data_dir
    return case


def cifar_full_shapes() -> Tuple[str, str]:
    """Random uint8 images with CIFAR-10's real split sizes (45k / 5k / 10k, 32x32x3)."""
    from workloads.datasets import cifar10, prepared
    rng = np.random.default_rng(0)
    splits = {split: {"images": rng.integers(0, 256, (n,) + cifar10.IMAGE_SHAPE, np.uint8),
                      "labels": rng.integers(0, cifar10.NUM_CLASSES, n).astype(np.int64)}
              for split, n in cifar10.SIZES.items()}
    data_dir = scratch_dir("cifar10")
    prepared.write_prepared(data_dir, cifar10.NAME, splits)
    return "cifar_wrn", data_dir


def ogbg_full_shapes() -> Tuple[str, str]:
    """Random graphs with ogbg-molpcba's split sizes (350,343 / 43,793 / 43,793) and its size
    distribution (about 26 atoms and 28 bonds a graph), in the real prepared format."""
    from workloads.datasets import ogbg_molpcba as ogbg
    rng = np.random.default_rng(0)
    splits = {}
    for split, g in ogbg.SIZES.items():
        nodes = np.clip(np.rint(rng.normal(26, 11, g)), 2, 300).astype(np.int64)
        edges = np.clip(np.rint(nodes * 1.08 + rng.normal(0, 2, g)), 1, None).astype(np.int64)
        local = (rng.random((edges.sum(), 2)) * np.repeat(nodes, edges)[:, None]).astype(np.int32)
        labels = (rng.random((g, ogbg.NUM_TASKS)) < 0.02).astype(np.float32)
        labels[rng.random(labels.shape) < 0.8] = np.nan
        splits[split] = {
            "node_feat": rng.integers(0, 120, (nodes.sum(), ogbg.NODE_FEATURES), np.uint8),
            "edge_feat": rng.integers(0, 5, (edges.sum(), ogbg.EDGE_FEATURES), np.uint8),
            "edge_index": local, "labels": labels,
            "node_offsets": np.concatenate([[0], np.cumsum(nodes)]),
            "edge_offsets": np.concatenate([[0], np.cumsum(edges)])}
    data_dir = scratch_dir("ogbg")
    ogbg.write_graph_dataset(data_dir, ogbg.NAME, splits)
    return "ogbg", data_dir


def imagenet_full_shapes() -> Tuple[str, str]:
    """ImageNet train's real size (1,281,167) in the real JPEG-shard format, pointing at 256
    synthetic JPEGs of ImageNet's typical sizes (short side 333-500); every batch does the
    real work: decode, random resized crop to 224, flip, RandAugment, mixup. The training
    step of ViT-S/16 at batch 1024 needs a GPU (on CPU it needs ~70 GB of activations)."""
    from workloads.datasets import imagenet
    data_dir = scratch_dir("imagenet")
    imagenet.write_full_shapes_imagenet(data_dir)
    return "imagenet_vit", data_dir


# Cases whose training step does not fit a CPU: on a CPU machine only their loader is timed.
STEP_NEEDS_GPU = {"imagenet_full_shapes"}

CASES: Dict[str, Callable[[], Tuple[str, str]]] = {
    "mnist_tiny": _generated("mnist_tiny"),
    "cifar_wrn_tiny": _generated("cifar_wrn_tiny"),
    "cifar_wrn_full_shapes": cifar_full_shapes,
    "ogbg_tiny": _generated("ogbg_tiny"),
    "ogbg_full_shapes": ogbg_full_shapes,
    "imagenet_vit_tiny": _generated("imagenet_vit_tiny"),
    "imagenet_full_shapes": imagenet_full_shapes,
}


def seconds_per_batch(queue, batches: int) -> float:
    next(queue)  # first batch: opens files, starts workers
    start = time.perf_counter()
    for _ in range(batches):
        next(queue)
    return (time.perf_counter() - start) / batches


def seconds_per_step(workload, submission, hparams, batch, batch_size: int,
                     steps: int) -> float:
    model_rng, opt_rng = random_utils.split(random_utils.PRNGKey(0), 2)
    params, model_state = workload.init_model_fn(model_rng)
    state = submission.init_optimizer_state(workload, params, model_state, hparams, opt_rng)
    types = workload.model_params_types

    def step(i):
        nonlocal state, params, model_state
        state, params, model_state = submission.update_params(
            workload, params, types, model_state, hparams, batch, workload.loss_type, state,
            [], i, random_utils.PRNGKey(i))
    step(0)  # warm-up (lazy allocations)
    start = time.perf_counter()
    for i in range(1, steps + 1):
        step(i)
    return (time.perf_counter() - start) / steps


def measure(case: str, batches: int, steps: int, repeats: int) -> dict:
    workload_name, data_dir = CASES[case]()
    workload = registry.get_workload(workload_name)
    submission = submission_loader.load_submission(SUBMISSION)
    batch_size = runner.global_batch_size_for(submission, workload)
    hparams = hyperparameters_from_dict(HPARAMS)
    time_step = case not in STEP_NEEDS_GPU or torch.cuda.is_available()
    load_s, step_s = [], []
    for repeat in range(repeats):
        queue = workload._build_input_queue(random_utils.PRNGKey(repeat), "train", data_dir,
                                            batch_size)
        load_s.append(seconds_per_batch(queue, batches))
        if time_step:
            step_s.append(seconds_per_step(workload, submission, hparams, next(queue),
                                           batch_size, steps))
    # Other processes only ever add time: the fastest repeat is the least disturbed.
    t_load = min(load_s)
    if not time_step:
        return {"workload": workload_name, "global_batch_size": batch_size,
                "loader_batches_per_s": round(1 / t_load, 3),
                "loader_examples_per_s": round(batch_size / t_load, 1),
                "train_steps_per_s": None, "ratio_loader_over_step": None,
                "note": "loader only: the training step needs a GPU",
                "batches": batches, "repeats": repeats}
    t_step = min(step_s)
    return {"workload": workload_name, "global_batch_size": batch_size,
            "loader_batches_per_s": round(1 / t_load, 2),
            "loader_examples_per_s": round(batch_size / t_load, 1),
            "train_steps_per_s": round(1 / t_step, 2),
            "ratio_loader_over_step": round(t_step / t_load, 2),
            "median_ratio": round(statistics.median(step_s) / statistics.median(load_s), 2),
            "batches": batches, "steps": steps, "repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, from: {', '.join(CASES)}")
    parser.add_argument("--batches", type=int, default=20, help="loader batches per repeat")
    parser.add_argument("--steps", type=int, default=5, help="training steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--no_save", action="store_true", help="print only")
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"--cases: unknown {unknown}; known: {', '.join(CASES)}")
    torch.set_num_threads(args.threads)
    results = {}
    for case in cases:
        results[case] = measure(case, args.batches, args.steps, args.repeats)
        r = results[case]
        train = (f"train {r['train_steps_per_s']:>7.2f} steps/s  ratio "
                 f"{r['ratio_loader_over_step']:>6.2f}" if r["train_steps_per_s"] else r["note"])
        print(f"{case:<26} batch {r['global_batch_size']:>5}  loader "
              f"{r['loader_batches_per_s']:>8.2f} batches/s  {train}", flush=True)
    if args.no_save:
        return
    results_io.save("input_pipeline", {"cases": results}, merge_into="cases")


if __name__ == "__main__":
    main()
