"""K-FAC-expand and K-FAC-reduce vs NAdamW on the tiny tier: step time and steps to target.

Per workload (default: every registered ``_tiny`` workload that K-FAC applies to):

    step time   seconds per ``update_params`` on one fixed batch, NAdamW vs K-FAC with the
                factor/inverse cadence of the point (amortised: the mean over ``--steps``
                consecutive steps, so T and T_inv show up at their real frequency); the
                fastest of ``--repeats`` runs. Ratios: kfac / nadamw, expand / reduce.
    steps       steps to the workload's validation target, each submission at its point
                (``point``) over ``--seeds`` seeds, no stopping at the target and no time
                budget (``--max_steps``, default step_hint). A step count is the step of the
                first eval at or past the target; evals come every ``--eval_period_s`` seconds
                of submission time, so a count overstates by at most that many seconds' steps.
                Ratio: median K-FAC steps / median NAdamW steps (the paper reports 0.5-0.75
                on AlgoPerf's full-size workloads).

    python -m benchmarks.kfac_vs_nadamw [--workloads cifar_wrn_tiny] [--seeds 2]

Results go to ``benchmarks/results/kfac_vs_nadamw.json`` (merged by workload).
"""
import argparse
import json
import os
import statistics
import sys
import time
from typing import Dict, Optional

import torch

from benchmarks import results_io
from algoperf import random_utils, runner, submission_loader
from algoperf.search_space import hyperparameters_from_dict
from algoperf.suite.plan import shipped_tiny_points
from workloads import registry
from workloads.definition import reached
from workloads.target_setting import TINY_POINT, one_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBMISSIONS = ("nadamw", "kfac_expand", "kfac_reduce")
KFAC_SUBMISSIONS = ("kfac_expand", "kfac_reduce")


def point(workload_name: str, name: str) -> dict:
    """NAdamW: the point the workload's tiny targets were set with (its tiny_targets.json).
    K-FAC: the first point of its tiny search space (the one ``make suite`` runs), the same on
    every workload (lr and damping from a 2-point sweep on cifar_wrn_tiny)."""
    if name in KFAC_SUBMISSIONS:
        return shipped_tiny_points(name)[0]
    module = sys.modules[registry.get_definition(workload_name).__module__]
    path = os.path.join(os.path.dirname(module.__file__), "tiny_targets.json")
    if not os.path.exists(path):
        return dict(TINY_POINT)
    with open(path) as f:
        return json.load(f)["point"]


def submission_path(name: str) -> str:
    return os.path.join(REPO, "submissions", name, "submission.py")


def seconds_per_step(workload_name: str, name: str, steps: int, repeats: int) -> float:
    workload = registry.get_workload(workload_name)
    data_dir = registry.resolve_data_dir(workload, None)
    registry.check_data(workload, data_dir)
    submission = submission_loader.load_submission(submission_path(name))
    hparams = hyperparameters_from_dict(point(workload_name, name))
    batch_size = runner.global_batch_size_for(submission, workload)
    batch = next(workload._build_input_queue(random_utils.PRNGKey(0), "train", data_dir,
                                             batch_size))
    best = float("inf")
    for repeat in range(repeats):
        params, model_state = workload.init_model_fn(random_utils.PRNGKey(repeat))
        state = submission.init_optimizer_state(workload, params, model_state, hparams,
                                                random_utils.PRNGKey(1))

        def step(i):
            nonlocal state, params, model_state
            state, params, model_state = submission.update_params(
                workload, params, workload.model_params_types, model_state, hparams, batch,
                workload.loss_type, state, [], i, random_utils.PRNGKey(i))
        step(0)  # warm-up: lazy allocations
        start = time.perf_counter()
        for i in range(1, steps + 1):
            step(i)
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def steps_to_target(workload_name: str, name: str, seed: int, max_steps: int,
                    eval_period_s: float) -> Optional[int]:
    definition = registry.get_definition(workload_name)
    run = one_run(workload_name, submission_path(name), point(workload_name, name), seed,
                  max_steps, None, eval_period_s)
    return next((e["step"] for e in run["evals"]
                 if reached(e["validation"], definition.validation_target_value,
                            definition.target_metric_name)), None)


def measure(workload_name: str, args) -> Dict:
    ms = {n: 1e3 * seconds_per_step(workload_name, n, args.steps, args.repeats)
          for n in SUBMISSIONS}
    print(f"{workload_name}: ms/step " + ", ".join(f"{n} {v:.1f}" for n, v in ms.items()),
          flush=True)
    max_steps = args.max_steps or registry.get_definition(workload_name).step_hint
    hits = {n: [] for n in SUBMISSIONS}
    for seed in range(args.seeds):
        for n in SUBMISSIONS:
            hits[n].append(steps_to_target(workload_name, n, seed, max_steps,
                                           args.eval_period_s))
            print(f"{workload_name}: seed {seed} {n} steps to target {hits[n][-1]}", flush=True)

    def median(xs):
        xs = [x for x in xs if x is not None]
        return statistics.median(xs) if xs else None

    med = {n: median(h) for n, h in hits.items()}
    ratio = {n: (round(med[n] / med["nadamw"], 3) if med[n] and med["nadamw"] else None)
             for n in KFAC_SUBMISSIONS}
    return {"ms_per_step": {n: round(v, 2) for n, v in ms.items()},
            "step_time_ratio_over_nadamw": {n: round(ms[n] / ms["nadamw"], 3)
                                            for n in KFAC_SUBMISSIONS},
            "step_time_ratio_expand_over_reduce": round(ms["kfac_expand"] / ms["kfac_reduce"],
                                                        3),
            "steps_to_target": hits, "median_steps_to_target": med,
            "steps_ratio_over_nadamw": ratio, "max_steps": max_steps, "seeds": args.seeds,
            "eval_period_s": args.eval_period_s,
            "points": {n: point(workload_name, n) for n in SUBMISSIONS}}


def default_workloads():
    return [n for n in registry.names() if n.endswith("_tiny") and n != "mnist_tiny"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=None, help="comma-separated (default: tiny)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--max_steps", type=int, default=None)
    parser.add_argument("--eval_period_s", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no_save", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.workloads.split(",") if args.workloads else default_workloads()
    results = {n: measure(n, args) for n in names}
    for n, r in results.items():
        print(f"{n}: step time kfac/nadamw {r['step_time_ratio_over_nadamw']}, "
              f"expand/reduce {r['step_time_ratio_expand_over_reduce']}; steps to target "
              f"{r['median_steps_to_target']}, kfac/nadamw {r['steps_ratio_over_nadamw']}")
    if args.no_save:
        return
    results_io.save("kfac_vs_nadamw", {"workloads": results}, merge_into="workloads")


if __name__ == "__main__":
    main()
