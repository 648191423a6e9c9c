"""Score a folder of suite (or benchmark) runs: the terminal table, CSVs, report and plot.

One function for ``algoperf suite`` and ``algoperf benchmark`` (the scoring itself is
``scoring.api.score``; this only fixes the tiny tier's choices: the workload registry's targets,
the given workloads as base workloads, no held-out rules, 1000 bootstrap samples).
"""
from typing import Dict, Sequence, Tuple


def score_folder(runs_dir: str, scores_dir: str, workloads: Sequence[str], num_studies: int,
                 num_trials: int, title: str, self_tuning: bool = False,
                 bootstrap_samples: int = 1000, out=None) -> Tuple[object, Dict[str, str]]:
    """Scores ``runs_dir``, prints the table, writes ``scores_dir``; returns (result, paths)."""
    from scoring import api, report
    from workloads import registry
    result = api.score(runs_dir, registry.targets_table(list(workloads)),
                       base_workloads=list(workloads), held_out_workloads=[], held_out=False,
                       num_studies=num_studies, num_trials=num_trials,
                       self_tuning_ruleset=self_tuning, bootstrap_samples=bootstrap_samples)
    paths = report.write_report(result, scores_dir, title)
    print(report.terminal_report(result), file=out)
    print(f"\nPerformance profile: {paths['plot_png']}\nReport: {paths['report']}", file=out,
          flush=True)
    return result, paths
