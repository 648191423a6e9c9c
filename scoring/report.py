"""What a person reads: terminal tables, CSVs, the profile plot, summaries, a Markdown report.

Everything here takes a ``ScoreResult`` and only formats it; no rule lives in this module.
"""
import os
import re
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

HOUR = 3600.0
HELD_OUT_MARK = "*"   # reached, but set to infinity by the held-out rules
MISS = "-"


# ----------------------------------------------------------------------------- text tables

def text_table(rows: Sequence[Sequence[str]], headers: Sequence[str],
               align: Optional[str] = None) -> str:
    """A plain monospace table; ``align`` is one 'l'/'r' per column (default: l, then r).

    A header may contain newlines: it is then printed on several lines.
    """
    align = align or "l" + "r" * (len(headers) - 1)
    header_lines = [h.split("\n") for h in headers]
    depth = max(len(lines) for lines in header_lines)
    header_lines = [[""] * (depth - len(lines)) + lines for lines in header_lines]
    widths = [max([len(x) for x in lines] + [len(str(row[i])) for row in rows])
              for i, lines in enumerate(header_lines)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if a == "l" else str(c).rjust(w)
                         for c, w, a in zip(cells, widths, align)).rstrip()

    out = [line([lines[k] for lines in header_lines]) for k in range(depth)]
    out.append("  ".join("-" * w for w in widths))
    out += [line(row) for row in rows]
    return "\n".join(out)


def wrap_name(name: str, width: int = 12) -> str:
    """Breaks a long workload name at underscores: 'librispeech_\\nconformer'."""
    parts, lines, current = name.split("_"), [], ""
    for part in parts:
        piece = part if not current else current + "_" + part
        if current and len(piece) > width:
            lines.append(current + "_")
            current = part
        else:
            current = piece
    return "\n".join(lines + [current])


def describe_config(result) -> str:
    c = result.config
    ruleset = "self-tuning" if c.self_tuning_ruleset else "external tuning"
    held = (f"{len(result.held_out_workloads)} held-out (max ratio {c.max_ratio:g})"
            if c.held_out else "no held-out rules")
    integral = (f"trapezoid, {c.num_points} points" if c.integral == "trapezoid"
                else "exact integral")
    parts = [ruleset, f"{len(result.scores)} submissions",
             f"{len(result.base_workloads)} base workloads", held, f"r_max {c.r_max:g}",
             integral]
    if c.reference_submission:
        parts.append(f"ratios to {c.reference_submission}")
    if result.bootstrap is not None:
        parts.append(f"{c.confidence:.0%} CI: bootstrap over studies, "
                     f"{c.bootstrap_samples} samples")
    elif c.bootstrap_samples > 0:
        parts.append("no CI: one study per submission (a bootstrap over studies needs two)")
    return " | ".join(parts)


def score_rows(result) -> List[List[str]]:
    has_ci = "ci_low" in result.scores
    rows = []
    for name, row in result.scores.iterrows():
        cells = [str(int(row["rank"])), name, f"{row['score']:.4f}"]
        if has_ci:
            cells.append(f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]")
        cells.append(f"{int(row['workloads_reached'])}/{int(row['num_workloads'])}")
        rows.append(cells)
    return rows


def score_headers(result) -> List[str]:
    headers = ["rank", "submission", "score"]
    if "ci_low" in result.scores:
        headers.append(f"{result.config.confidence:.0%} CI")
    return headers + ["reached"]


def hours(seconds: float) -> str:
    """Hours: 2 decimals from an hour up, 3 below, 3 significant digits under 36 s (tiny
    workloads reach their targets in minutes)."""
    if not np.isfinite(seconds):
        return MISS
    h = seconds / HOUR
    return f"{h:.2f}" if h >= 1 else f"{h:.3f}" if h >= 0.01 else f"{h:.3g}"


def time_cell(scored: float, raw: float, ratio: float) -> str:
    if np.isfinite(scored):
        return f"{hours(scored)} x{ratio:.2f}"
    if np.isfinite(raw):
        return f"{hours(raw)}{HELD_OUT_MARK}"
    return MISS


def time_rows(result) -> List[List[str]]:
    rows = []
    for name in result.scores.index:
        rows.append([name] + [time_cell(result.times.at[name, w], result.raw_times.at[name, w],
                                        result.ratios.at[name, w])
                              for w in result.base_workloads])
    return rows


def terminal_report(result, scores: bool = True) -> str:
    """Scores (unless ``scores=False``), the time-to-target table and a line of notes."""
    lines = ["AlgoPerf benchmark scores: " + describe_config(result), ""]
    if scores:
        headers = score_headers(result)
        lines += [text_table(score_rows(result), headers, align="rl" + "r" * (len(headers) - 2)),
                  ""]
    lines += [f"Time to target in hours, x ratio to the {_ratio_base(result)} "
              f"({MISS} missed, {HELD_OUT_MARK} reached but voided by the held-out rules)", "",
              text_table(time_rows(result),
                         ["submission"] + [wrap_name(w) for w in result.base_workloads]),
              "", notes_summary(result)]
    return "\n".join(lines)


def _ratio_base(result) -> str:
    ref = result.config.reference_submission
    return f"reference ({ref})" if ref else "fastest submission"


def notes_summary(result) -> str:
    if result.notes.empty:
        return "Notes: none (every expected study, trial and workload is there)."
    counts = result.notes["kind"].value_counts()
    described = {
        "stray": "stray folders ignored", "failed": "failed trials (counted as misses)",
        "no_evals": "trials without evals (counted as misses)",
        "truncated": "CSVs with a half-written last row (row dropped)",
        "count": "gap(s) in study/trial counts", "missing_workload": "missing workloads",
        "unknown_workload": "folders of workloads without targets (ignored)",
        "over_budget": "trials with evals past their budget (those evals voided)",
        "infinite_value": "trials with an infinite metric value (not counted)",
        "negative_time": "trials with a negative time", "time_backwards":
        "trials whose time goes backwards", "duplicate_step": "trials logging a step twice",
        "eval_data_access": "trials whose submission read held-out data"}
    parts = [f"{n} {described.get(kind, kind)}" for kind, n in counts.items()]
    return "Notes: " + "; ".join(parts) + " (details in notes.csv)."


# ----------------------------------------------------------------------------- files

def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "__", name)


def write_csvs(result, out_dir: str) -> Dict[str, str]:
    """Writes every table; returns {table: path}."""
    os.makedirs(out_dir, exist_ok=True)
    tables = {
        "scores": result.scores,
        "time_to_target": result.times,
        "time_to_target_raw": result.raw_times,
        "ratios": result.ratios,
        "performance_profiles": result.profiles,
        "studies": result.studies.set_index(["submission", "workload", "study"]),
        "trials": trial_summary(result.trials).set_index(["submission", "workload", "study",
                                                         "trial"]),
        "workloads": workload_summary(result),
        "speedups": result.speedups.set_index(["submission", "baseline"]),
        "notes": result.notes.set_index("path"),
    }
    paths = {}
    for name, frame in tables.items():
        paths[name] = os.path.join(out_dir, f"{name}.csv")
        frame.to_csv(paths[name])
    return paths


TRIAL_COLUMNS = ["submission", "workload", "study", "trial", "status", "reached",
                 "target_metric", "target_value", "lower_is_better", "best_value", "time_to_best",
                 "step_at_best", "time_to_target", "step_at_target", "eval_index_at_target",
                 "n_evals", "final_time", "final_step", "reason", "hparams", "path"]


def trial_summary(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[TRIAL_COLUMNS].sort_values(["submission", "workload", "study", "trial"],
                                             kind="stable")


def workload_summary(result) -> pd.DataFrame:
    """One row per (submission, workload), before the held-out rules: target, best value,
    studies and trials that reached it, trials not ok, median time to target (s)."""
    trials = result.trials
    best = np.where(trials["lower_is_better"], -trials["best_value"], trials["best_value"])
    per_trial = trials.assign(best=best, not_ok=trials["status"] != "ok").groupby(
        ["submission", "workload"], observed=True)
    out = per_trial.agg(target_metric=("target_metric", "first"),
                        target_value=("target_value", "first"),
                        lower_is_better=("lower_is_better", "first"), best=("best", "max"),
                        trials=("trial", "size"), trials_reached=("reached", "sum"),
                        trials_not_ok=("not_ok", "sum"))
    out["best_value"] = np.where(out["lower_is_better"], -out["best"], out["best"])
    studies = result.studies.assign(reached=np.isfinite(result.studies["time"])).groupby(
        ["submission", "workload"], observed=True)
    out = out.join(studies.agg(studies=("study", "size"), studies_reached=("reached", "sum"),
                               median_time=("time", "median")))
    return out.drop(columns="best")


def write_submission_summaries(result, out_dir: str) -> Dict[str, str]:
    """``summaries/<submission>.csv`` (one row per trial) and ``.md`` (per workload)."""
    folder = os.path.join(out_dir, "summaries")
    os.makedirs(folder, exist_ok=True)
    paths = {}
    per_workload = workload_summary(result)
    for submission, mine in trial_summary(result.trials).groupby("submission", sort=True,
                                                                 observed=True):
        base = os.path.join(folder, safe_name(submission))
        mine.to_csv(base + ".csv", index=False)
        with open(base + ".md", "w") as f:
            f.write(submission_markdown(submission, per_workload.loc[submission]))
        paths[submission] = base + ".md"
    return paths


def submission_markdown(submission: str, per_workload: pd.DataFrame) -> str:
    """Per workload: target, best value, studies/trials that reached it, median time."""
    rows = [[workload, f"{w.target_metric} {w.target_value:g}", _fmt(w.best_value, "{:.4f}"),
             f"{int(w.studies_reached)}/{int(w.studies)}",
             f"{int(w.trials_reached)}/{int(w.trials)}", hours(w.median_time),
             str(int(w.trials_not_ok))]
            for workload, w in per_workload.iterrows()]
    headers = ["workload", "target", "best value", "studies reached", "trials reached",
               "median time to target (h)", "trials not ok"]
    lines = [f"# {submission}", "", "Per workload (all trials; time is the median over "
             "studies of each study's fastest trial; before held-out rules).", "",
             markdown_table(rows, headers), "",
             f"Per trial: `{safe_name(submission)}.csv` (reached or not, best value, time to "
             "best, time to target, steps, hyperparameters).", ""]
    return "\n".join(lines)


def _fmt(value: float, pattern: str) -> str:
    return pattern.format(value) if np.isfinite(value) else MISS


def markdown_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    lines = ["| " + " | ".join(h.replace("\n", "") for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plot

def plot_profiles(result, path_stem: str, title: Optional[str] = None) -> List[str]:
    """Step plot of rho(tau), one line per submission, legend ordered by score.

    Writes ``<path_stem>.png`` and ``<path_stem>.pdf``; returns both paths.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r_max = result.config.r_max
    n = len(result.base_workloads)
    fig, ax = plt.subplots(figsize=(9, 5.2), dpi=120, layout="constrained")
    colors = plt.get_cmap("tab10").colors  # after ten lines: same colours, new dash style
    styles = ["-", "--", "-.", ":"]
    for i, (label, xs, ys) in enumerate(profile_lines(result)):
        ax.step(xs, ys, where="post", color=colors[i % len(colors)],
                linestyle=styles[(i // len(colors)) % len(styles)], linewidth=2, label=label)
    ax.set_xlim(1.0, r_max)
    ax.set_ylim(-0.02, 1.02)
    # Plain unicode Greek, not mathtext: same look, a fraction of the rendering time.
    ax.set_xlabel("τ: time to target / time of the "
                  + ("reference" if result.config.reference_submission else "fastest")
                  + " submission")
    ax.set_ylabel(f"ρ(τ): fraction of the {n} base workloads with ratio ≤ τ")
    ax.set_title(title or "Performance profiles")
    ax.grid(alpha=0.3)
    fig.legend(title="submission (score)", loc="outside right center", fontsize=8,
               title_fontsize=9, frameon=False)
    paths = [path_stem + ".png", path_stem + ".pdf"]
    os.makedirs(os.path.dirname(os.path.abspath(path_stem)), exist_ok=True)
    for path in paths:
        fig.savefig(path)
    plt.close(fig)
    return paths


def profile_lines(result):
    """[(legend label, xs, ys)] per submission, best score first (the legend order)."""
    r_max, n = result.config.r_max, len(result.base_workloads)
    return [(f"{name} ({row['score']:.4f})",
             *step_points(result.ratios.loc[name].to_numpy(), n, r_max))
            for name, row in result.scores.iterrows()]


def step_points(ratios: np.ndarray, num_workloads: int, r_max: float):
    """Breakpoints of rho over [1, r_max]: rho(x) at each x, for ``step(where='post')``."""
    finite = np.sort(ratios[ratios <= r_max])
    xs = np.concatenate([[1.0], np.clip(finite, 1.0, None), [r_max]])
    ys = np.array([(finite <= x).sum() for x in xs]) / num_workloads
    return xs, ys


# ----------------------------------------------------------------------------- Markdown report

def markdown_report(result, plot_file: str = "performance_profile.png",
                    title: Optional[str] = None) -> str:
    lines = [f"# {title or 'AlgoPerf benchmark scores'}", "", describe_config(result), ""]
    if plot_file:
        lines += [f"![Performance profiles]({plot_file})", ""]
    lines += ["## Scores", "",
             markdown_table(score_rows(result), score_headers(result)), "",
             "## Time to target", "",
             f"Hours, with the ratio to the {_ratio_base(result)}. {MISS}: missed; "
             f"{HELD_OUT_MARK}: reached, but voided by the held-out rules.", "",
             markdown_table(time_rows(result), ["submission"] + result.base_workloads), ""]
    lines += speedup_section(result)
    lines += ["## Notes", "", notes_summary(result).removeprefix("Notes: "), "",
              "Files: `scores.csv`, `time_to_target.csv`, `performance_profiles.csv`, "
              "`workloads.csv`, `trials.csv`, `studies.csv`, `speedups.csv`, `notes.csv`, "
              "`summaries/`.", ""]
    return "\n".join(lines)


def speedup_section(result) -> List[str]:
    """Speedup of every submission over one baseline: 'baseline' if present, else the last."""
    names = list(result.scores.index)
    if len(names) < 2:
        return []
    baseline = "baseline" if "baseline" in names else names[-1]
    rows = []
    for _, row in result.speedups[result.speedups["baseline"] == baseline].iterrows():
        ci = (f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
              if "ci_low" in row and np.isfinite(row["ci_low"]) else "")
        value = f"{row['speedup']:.2f}{ci}" if np.isfinite(row["speedup"]) else MISS
        rows.append([row["submission"], value, str(int(row["workloads"]))])
    order = {name: i for i, name in enumerate(names)}
    rows.sort(key=lambda r: order[r[0]])
    return [f"## Speedup over {baseline}", "",
            "Geometric mean over the base workloads both reached of "
            f"time({baseline}) / time(submission); above 1 is faster.", "",
            markdown_table(rows, ["submission", "speedup", "workloads"]), ""]


def write_report(result, out_dir: str, title: Optional[str] = None,
                 plot: bool = True) -> Dict[str, str]:
    """All outputs into ``out_dir``; returns {what: path}."""
    paths = write_csvs(result, out_dir)
    paths.update({f"summary:{k}": v
                  for k, v in write_submission_summaries(result, out_dir).items()})
    if plot:
        png, pdf = plot_profiles(result, os.path.join(out_dir, "performance_profile"), title)
        paths["plot_png"], paths["plot_pdf"] = png, pdf
    paths["report"] = os.path.join(out_dir, "report.md")
    with open(paths["report"], "w") as f:
        f.write(markdown_report(result, "performance_profile.png" if plot else "", title))
    return paths
