"""K-FAC-expand and K-FAC-reduce vs NAdamW under AlgoPerf's external-tuning protocol.

The paper's headline (Eschenhagen et al., 2023): both K-FAC flavours reach a fixed validation
target in 50-75% of the steps of a first-order reference. Measured here as AlgoPerf measures a
submission:

    one search space per submission, the same for every workload: its
        ``tuning_search_space_tiny.json`` (a list of points, trial k runs point k);
    per workload and study, the best of ``--trials`` (<= 5) trials;
    over ``--studies`` studies (study j has the suite's seed fold_in(rng_seed, j)), the median.

It runs ``algoperf suite --submissions=nadamw,kfac_expand,kfac_reduce --num_studies=S
--num_trials=T`` once per workload, with ``--max_global_steps`` = the workload's step_hint
(where every baseline's schedule has decayed the learning rate to 0, so a trial still short
of the target there misses it; AlgoPerf would let it idle on to the time budget). Trials stop
at the targets; evals come on the tiny tier's step grid, so a step count is exact to one grid
period (~5% of NAdamW's steps). Then it reads the logs:

    steps   a study's best trial = fewest steps to target; median over studies;
            ratio = K-FAC median / NAdamW median (the paper's quantity; <= 0.75 is the claim)
    time    a study's best trial = least submission time to target (AlgoPerf's rule); median
            over studies; ratio = K-FAC / NAdamW (on the trial clock of the suite)

A study in which no trial reached the target counts as missed (inf); a median over studies
with a miss among the middle values is inf.

    python -m benchmarks.kfac_protocol [--studies 3] [--trials 5] [--workloads cifar_wrn_tiny]

The suite resumes: re-running the command continues an interrupted run in ``--output_dir``.
Results go to ``benchmarks/results/kfac_protocol.json`` (merged by workload).
"""
import argparse
import math
import os
import subprocess
import sys
from typing import Dict, List

import numpy as np
import pandas as pd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = "nadamw"
KFAC_SUBMISSIONS = ("kfac_expand", "kfac_reduce")
SUBMISSIONS = (REFERENCE, *KFAC_SUBMISSIONS)
WORKLOADS = ("cifar_wrn_tiny", "ogbg_tiny", "imagenet_vit_tiny")
PAPER_RANGE = (0.5, 0.75)


def run_suite(output_dir: str, workload: str, studies: int, trials: int,
              num_workers: int) -> None:
    from workloads import registry
    subprocess.run([sys.executable, "-m", "algoperf.cli", "suite", f"--output_dir={output_dir}",
                    f"--submissions={','.join(SUBMISSIONS)}", f"--workloads={workload}",
                    f"--num_studies={studies}", f"--num_trials={trials}",
                    f"--num_workers={num_workers}",
                    f"--max_global_steps={registry.get_definition(workload).step_hint}"],
                   cwd=REPO, check=False, env=dict(os.environ, PYTHONPATH=REPO))


def trial_table(runs_dir: str, workloads: List[str]) -> pd.DataFrame:
    """One row per trial: submission, workload, study, trial, step_at_target,
    time_to_target (NaN / inf where missed), final_step."""
    from scoring import reader, rules
    from workloads import registry
    runs = reader.load_runs(runs_dir, registry.targets_table(workloads),
                            ignore_unknown_workloads=True)  # the other workloads of the folder
    table = rules.trial_results(runs.evals, runs.trials, runs.targets)
    table = table[table["submission"].isin(SUBMISSIONS) & table["workload"].isin(workloads)]
    return table[["submission", "workload", "study", "trial", "status", "step_at_target",
                  "time_to_target", "final_step"]]


def _median(values: List[float]) -> float:
    """Median with misses as inf (a miss above the middle does not hide a hit below)."""
    return float(np.median(np.asarray(values, dtype=float))) if values else math.inf


def _number(x: float):
    return None if not math.isfinite(x) else round(float(x), 3)


def summarise(table: pd.DataFrame, workload: str) -> Dict:
    rows = table[table["workload"] == workload]
    out: Dict = {"per_study": {}, "median_steps": {}, "median_time_s": {}}
    for name in SUBMISSIONS:
        mine = rows[rows["submission"] == name]
        steps = mine["step_at_target"].fillna(math.inf)
        best_steps = steps.groupby(mine["study"]).min()
        best_time = mine["time_to_target"].groupby(mine["study"]).min()
        best_trial = steps.groupby(mine["study"]).idxmin()
        out["per_study"][name] = {
            str(study): {"best_steps": _number(best_steps[study]),
                         "best_trial_by_steps": (str(mine.loc[best_trial[study], "trial"])
                                                 if math.isfinite(best_steps[study]) else None),
                         "best_time_s": _number(best_time[study]),
                         "trials_reached": int(np.isfinite(steps[mine["study"] == study]).sum()),
                         "trials": int((mine["study"] == study).sum())}
            for study in best_steps.index}
        out["median_steps"][name] = _number(_median(list(best_steps)))
        out["median_time_s"][name] = _number(_median(list(best_time)))
    reference_steps = out["median_steps"][REFERENCE]
    reference_time = out["median_time_s"][REFERENCE]
    out["steps_ratio_over_nadamw"] = {
        n: (round(out["median_steps"][n] / reference_steps, 3)
            if out["median_steps"][n] and reference_steps else None) for n in KFAC_SUBMISSIONS}
    out["time_ratio_over_nadamw"] = {
        n: (round(out["median_time_s"][n] / reference_time, 3)
            if out["median_time_s"][n] and reference_time else None) for n in KFAC_SUBMISSIONS}
    out["within_paper_claim"] = {n: (r is not None and r <= PAPER_RANGE[1])
                                 for n, r in out["steps_ratio_over_nadamw"].items()}
    out["studies"] = int(rows["study"].nunique())
    out["trials_per_study"] = int(rows.groupby(["submission", "study"]).size().max())
    return out


def search_spaces() -> Dict[str, List[dict]]:
    from algoperf.suite.plan import shipped_tiny_points
    return {name: shipped_tiny_points(name) for name in SUBMISSIONS}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--studies", type=int, default=3)
    parser.add_argument("--trials", type=int, default=5, help="per study (AlgoPerf: <= 5)")
    parser.add_argument("--num_workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--output_dir", default=os.path.join(REPO, "experiments",
                                                             "kfac_protocol"))
    parser.add_argument("--summary_only", action="store_true",
                        help="only read the runs already in --output_dir")
    parser.add_argument("--no_save", action="store_true")
    args = parser.parse_args(argv)
    workloads = args.workloads.split(",")
    if not args.summary_only:
        for workload in workloads:
            run_suite(args.output_dir, workload, args.studies, args.trials, args.num_workers)
    table = trial_table(os.path.join(args.output_dir, "external_tuning"), workloads)
    results = {w: summarise(table, w) for w in workloads}
    for w, r in results.items():
        print(f"{w:18s} median steps {r['median_steps']}  K-FAC/NAdamW steps "
              f"{r['steps_ratio_over_nadamw']}  time {r['time_ratio_over_nadamw']}")
    if args.no_save:
        return
    from benchmarks import results_io
    results_io.save("kfac_protocol", {"workloads": results, "search_spaces": search_spaces(),
                                      "paper_steps_ratio": list(PAPER_RANGE),
                                      "command": "python -m benchmarks.kfac_protocol "
                                                 + " ".join(argv or sys.argv[1:])},
                    merge_into="workloads")


if __name__ == "__main__":
    main()
