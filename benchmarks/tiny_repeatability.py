"""Is the tiny tier's table the same run after run? Two measurements, one command each.

``--part sharing``: what two trials sharing two cores do to a trial's clock. Each tiny
workload's NAdamW baseline trains ``steps`` steps (a bare loop of data_selection +
update_params, one torch thread) in three set-ups, each read on both clocks
(``algoperf.clocks``):

    alone     one process, pinned to core 0, nothing else running (``--repeats`` times, one
              after another: the machine's own run-to-run spread)
    pinned    two identical processes at once, pinned to cores 0 and 1 (the suite's default)
    unpinned  two identical processes at once, each free to run on any core

and the slowdown of each set-up is its seconds over ``alone``'s, per clock.

``--part suite``: ``algoperf suite`` (the ``make suite`` command) twice, back to back, into
two fresh folders, then the rank agreement of the two score tables and the largest score and
time-to-target differences.

    python -m benchmarks.tiny_repeatability --part sharing
    python -m benchmarks.tiny_repeatability --part suite [--output_dir experiments/repeatability]

Results go to ``benchmarks/results/tiny_repeatability.json`` (each part its own entry). Run it
on an otherwise idle machine: that is the situation it describes.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = {"mnist_tiny": 3000, "cifar_wrn_tiny": 40, "ogbg_tiny": 80, "imagenet_vit_tiny": 12}


def train_steps(workload_name: str, steps: int, data_dir: Optional[str]) -> Dict[str, float]:
    """``steps`` NAdamW steps after one warm-up step: ``{"wall_s", "cpu_s"}`` of the steps."""
    import torch

    from algoperf import random_utils, runner, submission_loader
    from algoperf.backends import get_backend
    from algoperf.search_space import draw_hyperparameters, load_search_space
    from workloads import registry

    torch.set_num_threads(1)
    folder = os.path.join(REPO, "submissions", "nadamw")
    submission = submission_loader.load_submission(os.path.join(folder, "submission.py"))
    (hp,) = draw_hyperparameters(load_search_space(
        os.path.join(folder, "tuning_search_space_tiny.json")), 1, seed=0)
    workload = registry.get_workload(workload_name, "pytorch", get_backend("pytorch"))
    data_dir = registry.resolve_data_dir(workload, data_dir)
    registry.check_data(workload, data_dir)
    data_rng, opt_rng, model_rng, rng = random_utils.split(random_utils.PRNGKey(0), 4)
    queue = workload._build_input_queue(data_rng, "train", data_dir=data_dir,
                                        global_batch_size=runner.global_batch_size_for(
                                            submission, workload))
    params, state = workload.init_model_fn(model_rng)
    opt = submission.init_optimizer_state(workload, params, state, hp, opt_rng)

    def step(i):
        nonlocal opt, params, state
        batch = submission.data_selection(workload, queue, opt, params, state, hp, i, rng)
        opt, params, state = submission.update_params(
            workload=workload, current_param_container=params,
            current_params_types=workload.model_params_types, model_state=state,
            hyperparameters=hp, batch=batch, loss_type=workload.loss_type,
            optimizer_state=opt, eval_results=[], global_step=i, rng=rng)

    step(0)
    wall, cpu = time.time(), time.process_time()
    for i in range(1, steps + 1):
        step(i)
    return {"wall_s": time.time() - wall, "cpu_s": time.process_time() - cpu}


def _worker(workload: str, steps: int, cores: Optional[List[int]]) -> subprocess.Popen:
    command = [sys.executable, "-m", "benchmarks.tiny_repeatability", "--worker", workload,
               "--steps", str(steps)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=REPO)
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO, env=env,
                            preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores
                            else None)


def _times(procs: List[subprocess.Popen]) -> List[Dict[str, float]]:
    out = []
    for proc in procs:
        stdout, _ = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"a worker exited with status {proc.returncode}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def sharing(workloads: List[str], repeats: int = 3) -> Dict[str, object]:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("--part sharing needs two cores")
    table = {}
    for name in workloads:
        steps = STEPS[name]
        runs = [_times([_worker(name, steps, [cores[0]])])[0] for _ in range(repeats)]
        alone = {clock: statistics.median(r[clock] for r in runs)
                 for clock in ("wall_s", "cpu_s")}
        pinned = _times([_worker(name, steps, [c]) for c in cores[:2]])
        unpinned = _times([_worker(name, steps, None) for _ in range(2)])
        row = {"steps": steps, "alone_runs": runs, "alone": alone, "pinned": pinned,
               "unpinned": unpinned}
        for clock in ("wall_s", "cpu_s"):  # the machine's own run-to-run spread, idle
            row[f"alone_{clock[:-2]}_max_over_min"] = round(
                max(r[clock] for r in runs) / min(r[clock] for r in runs), 3)
        for setup in ("pinned", "unpinned"):
            for clock in ("wall_s", "cpu_s"):
                row[f"{setup}_{clock[:-2]}_slowdown"] = [
                    round(t[clock] / alone[clock], 3) for t in row[setup]]
        table[name] = row
        print(f"{name:18s} alone {alone['wall_s']:.2f} s (max/min over {repeats}: wall "
              f"{row['alone_wall_max_over_min']}, cpu {row['alone_cpu_max_over_min']}) | "
              f"slowdown wall / cpu: pinned {row['pinned_wall_slowdown']} / "
              f"{row['pinned_cpu_slowdown']}, unpinned {row['unpinned_wall_slowdown']} / "
              f"{row['unpinned_cpu_slowdown']}", flush=True)
    return {"what": "seconds of `steps` NAdamW steps; alone: median of `repeats` runs one "
                    "after another (max_over_min: their spread); slowdown = seconds / alone's "
                    "median, per clock", "repeats": repeats, "workloads": table}


def _scores(runs_dir: str, workloads: List[str]):
    from scoring import api
    from workloads import registry
    result = api.score(runs_dir, registry.targets_table(workloads), base_workloads=workloads,
                       held_out_workloads=[], held_out=False, num_studies=1, num_trials=1)
    return result.scores["score"], result.raw_times


def suite(output_dir: str) -> Dict[str, object]:
    from algoperf.suite import plan
    workloads = plan.tiny_workloads()
    runs, seconds = [], []
    for run in (1, 2):
        folder = os.path.join(output_dir, f"run_{run}")
        shutil.rmtree(folder, ignore_errors=True)
        start = time.time()
        subprocess.run([sys.executable, "-m", "algoperf.cli", "suite",
                        f"--output_dir={folder}"], cwd=REPO, check=True,
                       env=dict(os.environ, PYTHONPATH=REPO))
        seconds.append(round(time.time() - start, 1))
        runs.append(_scores(os.path.join(folder, "external_tuning"), workloads))
    (s1, t1), (s2, t2) = runs
    order1 = list(s1.sort_values(ascending=False, kind="stable").index)
    order2 = list(s2.sort_values(ascending=False, kind="stable").index)
    diff = (s1 - s2.reindex(s1.index)).abs()
    ratio = (t2.reindex_like(t1) / t1).stack()
    finite = ratio[np.isfinite(ratio)]
    summary = {
        "scores": {"run_1": s1.round(4).to_dict(), "run_2": s2.round(4).to_dict()},
        "rank_order": {"run_1": order1, "run_2": order2},
        "same_rank_order": order1 == order2,
        "max_score_difference": round(float(diff.max()), 4),
        "max_score_difference_submission": str(diff.idxmax()),
        "time_to_target_s": {"run_1": t1.round(3).to_dict(), "run_2": t2.round(3).to_dict()},
        "largest_time_to_target_change": round(float((finite - 1).abs().max()), 4)
        if len(finite) else None,
        "suite_wall_s": seconds,
    }
    print(json.dumps({k: summary[k] for k in ("rank_order", "same_rank_order",
                                               "max_score_difference", "suite_wall_s")},
                     indent=1))
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["sharing", "suite"])
    parser.add_argument("--workloads", default=",".join(STEPS))
    parser.add_argument("--repeats", type=int, default=3, help="--part sharing: runs alone")
    parser.add_argument("--output_dir", default=os.path.join(REPO, "experiments",
                                                             "repeatability"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(train_steps(args.worker, args.steps, args.data_dir)))
        return
    if not args.part:
        parser.error("--part is required (sharing or suite)")
    from benchmarks import results_io
    entry = sharing(args.workloads.split(","), args.repeats) if args.part == "sharing" \
        else suite(args.output_dir)
    results_io.save("tiny_repeatability", {"parts": {args.part: entry}}, merge_into="parts")


if __name__ == "__main__":
    main()
