"""Target setting for the cifar_wrn workloads (AlgoPerf's rule), used for cifar_wrn_tiny.

AlgoPerf's procedure: take the best configuration of the tuned first-order baselines, rerun
it over several seeds without stopping at any target, then

    validation target = median over seeds of the best validation accuracy
    test target       = worst test accuracy among the runs that reach the validation target,
                        taken at the eval where each first reaches it

(so a run that reaches the validation target also counts as reaching the test target).

This command runs the NAdamW baseline (``submissions/nadamw``) at a fixed point (``--point``,
default ``TINY_POINT``) on ``--workload`` for ``--seeds`` seeds. For cifar_wrn_tiny the
validation target is also lowered by ``--margin`` (0.02) and rounded down to ``--decimals`` (2)
so that a run a little slower than the median still reaches it within the budget; for the
full-size workloads on real CIFAR-10 use ``--margin 0 --decimals 4`` and the tuned point::

    python -m workloads.cifar_wrn.calibrate_tiny_targets [--seeds 3]
    python -m workloads.cifar_wrn.calibrate_tiny_targets --workload cifar_wrn \\
        --data_dir DATA --point best_point.json --margin 0 --decimals 4 --seeds 5 --out t.json

writes ``workloads/cifar_wrn/tiny_targets.json`` by default (the recorded run is described
there and in ``CifarWrnTinyDefinition``).
"""
import argparse
import json
import math
import os
import statistics
from typing import Dict, List

import torch

from algoperf import random_utils, runner
from algoperf.backends.pytorch import PyTorchBackend
from algoperf.search_space import hyperparameters_from_dict
from workloads import registry

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SUBMISSION = os.path.join(REPO, "submissions", "nadamw", "submission.py")
# One well-behaved NAdamW point inside the baseline's search space.
TINY_POINT = {"learning_rate": 0.003, "one_minus_beta1": 0.1, "beta2": 0.999,
              "warmup_factor": 0.05, "weight_decay": 0.05, "label_smoothing": 0.0,
              "dropout_rate": 0.0}


def one_run(workload_name: str, point: Dict, seed: int, max_steps: int, data_dir: str,
            eval_period_s: float) -> dict:
    """One untargeted run: ``{"seed", "evals": [{"step", "time_s", "validation", "test"}]}``."""
    workload = registry.get_workload(workload_name)
    workload.validation_target_value = float("inf")  # never stop: see the whole trajectory
    workload.test_target_value = float("inf")
    workload.eval_period_time_sec = eval_period_s
    workload.max_allowed_runtime_sec = float("inf")  # max_steps ends the run
    config = runner.TrialConfig(data_dir=registry.resolve_data_dir(workload, data_dir),
                                save_checkpoints=False, max_global_steps=max_steps)
    result = runner.train_once(workload, runner.load_submission(SUBMISSION), PyTorchBackend(),
                               hyperparameters_from_dict(point),
                               random_utils.PRNGKey(seed), None, config)
    metric = workload.target_metric_name
    return {"seed": seed,
            "evals": [{"step": s, "time_s": round(e["score"], 2),
                       "validation": e[f"validation/{metric}"], "test": e[f"test/{metric}"]}
                      for s, e in result.eval_results]}


def _floor(x: float, decimals: int) -> float:
    return math.floor(round(x * 10 ** decimals, 6)) / 10 ** decimals


def summarise(runs: List[dict], margin: float, decimals: int) -> dict:
    """Targets from untargeted runs (accuracy: higher is better), by the rule above."""
    best = [max(e["validation"] for e in r["evals"]) for r in runs]
    validation_target = _floor(statistics.median(best) - margin, decimals)
    hits = []
    for r, b in zip(runs, best):
        r["best_validation"] = b
        r["validation_hit"] = next(
            (e for e in r["evals"] if e["validation"] >= validation_target), None)
        if r["validation_hit"]:
            hits.append(r["validation_hit"])
    test_target = _floor(min(h["test"] for h in hits), decimals + 1)
    return {"validation_target": validation_target, "test_target": test_target,
            "rule": f"validation = median best validation - {margin}, rounded down to "
                    f"{decimals} decimals; test = worst test accuracy at the first eval "
                    f"reaching the validation target (rounded down to {decimals + 1})",
            "runs": [{k: v for k, v in r.items() if k != "evals"} for r in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="cifar_wrn_tiny")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max_steps", type=int, default=None,
                        help="steps per run (default: the workload's step_hint)")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--point", default=None,
                        help="JSON file with the hyperparameter point (a dict or [dict])")
    parser.add_argument("--eval_period_s", type=float, default=5.0)
    parser.add_argument("--margin", type=float, default=0.02)
    parser.add_argument("--decimals", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(HERE, "tiny_targets.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    point = TINY_POINT
    if args.point:
        with open(args.point) as f:
            point = json.load(f)
        point = point[0] if isinstance(point, list) else point
    max_steps = args.max_steps or registry.get_definition(args.workload).step_hint
    runs = []
    for seed in range(args.seeds):
        runs.append(one_run(args.workload, point, seed, max_steps, args.data_dir,
                            args.eval_period_s))
        print(json.dumps(runs[-1]), flush=True)
    out = dict(summarise(runs, args.margin, args.decimals), workload=args.workload,
               point=point, steps_per_run=max_steps)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps({k: out[k] for k in ("validation_target", "test_target")}))


if __name__ == "__main__":
    main()
