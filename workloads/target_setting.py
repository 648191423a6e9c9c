"""Target setting (AlgoPerf's procedure), one command for every workload.

AlgoPerf sets a workload's targets from its tuned first-order baselines: take the best
configuration, rerun it over several seeds without stopping at any target, then

    validation target = median over seeds of the best validation result
    test target       = worst test result among the runs that reach the validation target,
                        taken at the eval where each first reaches it

(so a run that reaches the validation target also counts as reaching the test target).
"Best" and "worst" follow the metric's direction (accuracy and mAP up, error rates down).

For a ``_tiny`` workload the validation target may be moved toward the easy side by
``--margin`` and rounded to ``--decimals``, so that a run a little slower than the median
still reaches it within the budget; the rounding always moves toward the easy side too. The
test target moves by the same margin: a run stops only once it has reached both targets, and
a test target taken from three runs' first hits on 1-2k test examples is otherwise often out
of reach of a run that reached the eased validation target (it would then train to the end of
its budget although its time to target is already logged).
For a full-size workload on real data use ``--margin 0 --decimals 4`` and the tuned point::

    python -m workloads.target_setting --workload cifar_wrn_tiny --seeds 3 \\
        --out workloads/cifar_wrn/tiny_targets.json
    python -m workloads.target_setting --workload cifar_wrn --data_dir DATA \\
        --point best_point.json --margin 0 --decimals 4 --seeds 5 --out targets.json

``--validation_target`` fixes the validation target instead (mnist_tiny keeps mnist's 0.97)
and only the test target is derived. Runs use the NAdamW baseline unless ``--submission``
names another; ``--point`` is a JSON file with one point (or a list: the first is used).
"""
import argparse
import json
import math
import os
import statistics
import sys
from typing import Dict, List, Optional

import torch

from algoperf import random_utils, runner, submission_loader
from algoperf.backends.pytorch import PyTorchBackend
from algoperf.search_space import hyperparameters_from_dict
from workloads import registry
from algoperf.benchmark_rules import lower_is_better

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NADAMW = os.path.join(REPO, "submissions", "nadamw", "submission.py")
# One well-behaved NAdamW point inside the baseline's search space (used for the tiny tier).
TINY_POINT = {"learning_rate": 0.003, "one_minus_beta1": 0.1, "beta2": 0.999,
              "warmup_factor": 0.05, "weight_decay": 0.05, "label_smoothing": 0.0,
              "dropout_rate": 0.0}


def one_run(workload_name: str, submission_path: str, point: Dict, seed: int, max_steps: int,
            data_dir: Optional[str], eval_period_s: float) -> dict:
    """One untargeted run: ``{"seed", "evals": [{"step", "time_s", "validation", "test"}]}``."""
    workload = registry.get_workload(workload_name)
    never = -math.inf if lower_is_better(workload.target_metric_name) else math.inf
    workload.validation_target_value = never  # never stop: see the whole trajectory
    workload.test_target_value = never
    workload.eval_period_time_sec = eval_period_s
    workload.eval_period_steps = None  # every eval_period_s, even on a step-grid tier
    workload.max_allowed_runtime_sec = math.inf  # max_steps ends the run
    config = runner.TrialConfig(data_dir=registry.resolve_data_dir(workload, data_dir),
                                save_checkpoints=False, max_global_steps=max_steps)
    result = runner.train_once(workload, submission_loader.load_submission(submission_path),
                               PyTorchBackend(), hyperparameters_from_dict(point),
                               random_utils.PRNGKey(seed), None, config)
    metric = workload.target_metric_name
    return {"seed": seed,
            "evals": [{"step": s, "time_s": round(e["score"], 2),
                       "validation": e[f"validation/{metric}"], "test": e[f"test/{metric}"]}
                      for s, e in result.eval_results]}


def time_to_target(workload_name: str, submission_path: str, point: Dict, rng_seed: int,
                   data_dir: Optional[str], eval_period_s: float,
                   eval_period_steps: Optional[int] = None) -> Dict[str, object]:
    """One run to the workload's targets, as the suite's trial 1 of a study with seed
    ``rng_seed`` runs (same key, the workload's clock and budget), evaluated every
    ``eval_period_s`` (or at steps 1, k, 2k, ... for ``eval_period_steps`` = k):
    ``{"rng_seed", "time_to_target_s", "step_to_target" (both None: missed), "step" (the
    last)}``."""
    workload = registry.get_workload(workload_name)
    workload.eval_period_time_sec = eval_period_s
    workload.eval_period_steps = eval_period_steps
    config = runner.TrialConfig(data_dir=registry.resolve_data_dir(workload, data_dir),
                                save_checkpoints=False)
    result = runner.train_once(workload, submission_loader.load_submission(submission_path),
                               PyTorchBackend(), hyperparameters_from_dict(point),
                               runner.trial_seed(rng_seed, 0, 1), None, config)
    return {"rng_seed": rng_seed, "step": result.global_step,
            "step_to_target": result.step_to_target,
            "time_to_target_s": None if result.time_to_target is None
            else round(result.time_to_target, 3)}


def calibrate_eval_period(workload_name: str, runs: List[dict], fraction: float = 0.05
                          ) -> Dict[str, object]:
    """The eval periods that resolve NAdamW's time to target to ``fraction`` of it.

    In time: ``fraction`` x the median ``time_to_target_s`` over ``runs``, rounded down to 2
    significant digits. On a step grid: ``fraction`` x the median ``step_to_target``, rounded
    down (at least 1 step); its resolution in time is the same fraction, as a run's step time
    barely changes over the run. Raises ValueError when fewer than half the runs reach the
    target."""
    reached = [r for r in runs if r["time_to_target_s"] is not None]
    if 2 * len(reached) < len(runs):
        raise ValueError(f"{workload_name}: only {len(reached)} of {len(runs)} runs reached "
                         "the targets; no median time to target")
    median = statistics.median(r["time_to_target_s"] for r in reached)
    raw = fraction * median
    digits = 1 - math.floor(math.log10(raw))
    period = math.floor(raw * 10 ** digits) / 10 ** digits
    calibration = {"rule": f"eval period = {fraction:g} x median NAdamW time to target, "
                           "rounded down to 2 significant digits; on a step grid, "
                           f"{fraction:g} x median NAdamW steps to target, rounded down",
                   "runs": runs, "median_time_to_target_s": median, "eval_period_s": period,
                   "resolution": round(period / median, 4)}
    if all(r.get("step_to_target") is not None for r in reached):
        median_steps = statistics.median(r["step_to_target"] for r in reached)
        steps = max(1, math.floor(fraction * median_steps))
        calibration.update(median_steps_to_target=median_steps, eval_period_steps=steps,
                           resolution_steps=round(steps / median_steps, 4))
    return calibration


def _round_easy(x: float, decimals: int, lower_better: bool) -> float:
    """Round to ``decimals`` toward the easy side: up for a loss, down for an accuracy."""
    scaled = round(x * 10 ** decimals, 6)
    return (math.ceil(scaled) if lower_better else math.floor(scaled)) / 10 ** decimals


def summarise(runs: List[dict], margin: float, decimals: int, lower_better: bool = False,
              validation_target: Optional[float] = None) -> dict:
    """Targets from untargeted runs (each ``{"seed", "evals"}``) by the rule above.

    Raises ValueError when no run reaches the validation target (no test target exists).
    """
    better = min if lower_better else max
    worse = max if lower_better else min
    sign = 1.0 if lower_better else -1.0  # the margin moves the target toward the easy side
    best = [better(e["validation"] for e in r["evals"]) for r in runs]
    derived = validation_target is None
    if derived:
        validation_target = _round_easy(statistics.median(best) + sign * margin, decimals,
                                        lower_better)
        rule = (f"validation = median best validation {'+' if lower_better else '-'} {margin}, "
                f"rounded to {decimals} decimals toward the easy side")
    else:
        rule = f"validation = fixed {validation_target}"

    def hit(value: float) -> bool:
        return value <= validation_target if lower_better else value >= validation_target

    summaries, hits = [], []
    for r, b in zip(runs, best):
        first = next((e for e in r["evals"] if hit(e["validation"])), None)
        summaries.append({"seed": r["seed"], "best_validation": b, "validation_hit": first})
        if first:
            hits.append(first["test"])
    if not hits:
        raise ValueError(f"no run reached the validation target {validation_target}; best "
                         f"validation results were {best}")
    if derived:
        test_target = _round_easy(worse(hits) + sign * margin, decimals + 1, lower_better)
        rule += (f"; test = worst test result at the first eval reaching the validation "
                 f"target {'+' if lower_better else '-'} {margin}, rounded to {decimals + 1} "
                 "decimals toward the easy side")
    else:
        test_target = _round_easy(worse(hits), decimals + 1, lower_better)
        rule += (f"; test = worst test result at the first eval reaching the validation "
                 f"target, rounded to {decimals + 1} decimals toward the easy side")
    return {"validation_target": validation_target, "test_target": test_target,
            "rule": rule, "runs": summaries}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", required=True)
    parser.add_argument("--submission", default=NADAMW, help="submission.py to run")
    parser.add_argument("--point", default=None,
                        help="JSON file with the hyperparameter point (a dict or [dict]); "
                             "default: TINY_POINT")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max_steps", type=int, default=None,
                        help="steps per run (default: the workload's step_hint)")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--eval_period_s", type=float, default=5.0)
    parser.add_argument("--eval_period_steps", type=int, default=None,
                        help="with --calibrate_eval_period: evaluate at steps 1, k, 2k, ... "
                             "instead of every --eval_period_s")
    parser.add_argument("--margin", type=float, default=0.02)
    parser.add_argument("--decimals", type=int, default=2)
    parser.add_argument("--validation_target", type=float, default=None)
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--calibrate_eval_period", action="store_true",
                        help="instead of setting targets: run to the workload's targets with "
                             "the suite's seeds (studies 0..seeds-1 of rng_seed 0), evaluating "
                             "every --eval_period_s, and add the eval period that resolves "
                             "the median time to target to 5%% to --out as "
                             "'eval_period_calibration'")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    point = TINY_POINT
    if args.point:
        with open(args.point) as f:
            point = json.load(f)
        point = point[0] if isinstance(point, list) else point
    definition = registry.get_definition(args.workload)
    if args.calibrate_eval_period:
        from algoperf.suite.plan import study_seed
        runs = []
        for study in range(args.seeds):
            runs.append(time_to_target(args.workload, args.submission, point,
                                       study_seed(0, study), args.data_dir, args.eval_period_s,
                                       args.eval_period_steps))
            print(json.dumps(runs[-1]), flush=True)
        calibration = dict(calibrate_eval_period(args.workload, runs),
                           clock=definition.clock,
                           measured_on=(f"steps 1, {args.eval_period_steps}, "
                                        f"{2 * args.eval_period_steps}, ..."
                                        if args.eval_period_steps
                                        else f"every {args.eval_period_s} s"),
                           command="python -m workloads.target_setting "
                                   + " ".join(argv if argv is not None else sys.argv[1:]))
        with open(args.out) as f:
            recorded = json.load(f)
        recorded["eval_period_calibration"] = calibration
        with open(args.out, "w") as f:
            json.dump(recorded, f, indent=2)
        print(json.dumps({k: calibration.get(k) for k in (
            "median_time_to_target_s", "eval_period_s", "median_steps_to_target",
            "eval_period_steps")}))
        return
    max_steps = args.max_steps or definition.step_hint
    runs = []
    for seed in range(args.seeds):
        runs.append(one_run(args.workload, args.submission, point, seed, max_steps,
                            args.data_dir, args.eval_period_s))
        print(json.dumps(runs[-1]), flush=True)
    out = dict(summarise(runs, args.margin, args.decimals,
                         lower_is_better(definition.target_metric_name),
                         args.validation_target),
               workload=args.workload, submission=os.path.relpath(args.submission, REPO),
               point=point, steps_per_run=max_steps)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps({k: out[k] for k in ("validation_target", "test_target")}))


if __name__ == "__main__":
    main()
