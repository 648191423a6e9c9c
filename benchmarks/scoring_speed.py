"""How fast is scoring the whole AlgoPerf v0.5 archive? (goal: under 5 s on two CPU cores)

    python -m benchmarks.scoring_speed [--archive ../shared/algoperf_v05/logs.tar.xz]

Unpacks the archive once (timed on its own, not part of scoring), then scores both rulesets the
way ``algoperf score`` does, phase by phase: read the logs, apply the rules (point scores),
bootstrap (1000 replicates), write the report (CSVs, summaries, plot, Markdown). In-process
phases are the median of ``--repeats`` runs on a warm file cache; the end-to-end CLI time
(a fresh ``python -m algoperf.cli score`` per ruleset, imports included) is measured once.
It also checks that the 17 published scores come out, and writes
``benchmarks/results/scoring_speed.json``.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "algoperf_v05")
RULESETS = ("external_tuning", "self_tuning")
GOAL_S = 5.0


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def unpack(archive: str, into: str) -> None:
    if shutil.which("tar") and shutil.which("xz"):
        subprocess.run(["tar", "-xJf", archive, "-C", into], check=True)
    else:
        import tarfile
        with tarfile.open(archive, "r:xz") as f:
            f.extractall(into, filter="data")


def score_ruleset(scoring, report, logs: str, ruleset: str, targets: str, out_dir: str):
    """One ``algoperf score`` worth of work, phase by phase: {phase: seconds}, scores."""
    runs, read_s = timed(scoring.load_runs, os.path.join(logs, ruleset), targets)
    self_tuning = ruleset == "self_tuning"
    result, score_s = timed(scoring.score, runs, self_tuning_ruleset=self_tuning)
    result, total_with_bootstrap_s = timed(scoring.score, runs, self_tuning_ruleset=self_tuning,
                                           bootstrap_samples=1000)
    _, report_s = timed(report.write_report, result, out_dir, f"v0.5 {ruleset}")
    phases = {"read_s": read_s, "rules_s": score_s,
              "bootstrap_s": max(total_with_bootstrap_s - score_s, 0.0), "report_s": report_s}
    phases["total_s"] = read_s + total_with_bootstrap_s + report_s
    counts = {"trials": int(len(runs.trials)), "evals": int(len(runs.evals))}
    return phases, counts, result.scores["score"]


def cli_wall_time(logs: str, ruleset: str, targets: str, out_dir: str) -> float:
    args = [sys.executable, "-m", "algoperf.cli", "score",
            f"--submission_directory={os.path.join(logs, ruleset)}",
            f"--targets_file={targets}", f"--output_dir={out_dir}"]
    if ruleset == "self_tuning":
        args.append("--self_tuning_ruleset")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env=env, cwd=REPO)
    return time.perf_counter() - start


def machine() -> dict:
    import numpy
    import pandas
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "python": platform.python_version(),
            "numpy": numpy.__version__, "pandas": pandas.__version__}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", default=os.path.join(SHARED, "logs.tar.xz"))
    parser.add_argument("--targets", default=os.path.join(SHARED, "workload_targets_v05.json"))
    parser.add_argument("--published", default=os.path.join(SHARED, "published_scores.json"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output",
                        default=os.path.join(REPO, "benchmarks", "results", "scoring_speed.json"))
    args = parser.parse_args(argv)
    if not os.path.exists(args.archive):
        sys.exit(f"scoring_speed: no archive at {args.archive} (pass --archive)")

    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    _, import_s = timed(__import__, "scoring.report")  # numpy, pandas, scoring
    machine_info = dict(machine(), load_average_1_5_15min_at_start=load)
    import scoring
    from scoring import report

    with tempfile.TemporaryDirectory() as tmp:
        logs = os.path.join(tmp, "logs")
        os.makedirs(logs)
        _, unpack_s = timed(unpack, args.archive, logs)
        runs = {ruleset: [] for ruleset in RULESETS}
        for _ in range(args.repeats):
            for ruleset in RULESETS:
                runs[ruleset].append(score_ruleset(scoring, report, logs, ruleset,
                                                   args.targets, os.path.join(tmp, ruleset)))
        cli_s = {ruleset: cli_wall_time(logs, ruleset, args.targets, os.path.join(tmp, "cli"))
                 for ruleset in RULESETS}

    per_ruleset = {}
    for ruleset, repeats in runs.items():
        phases = {key: median([p[key] for p, _, _ in repeats]) for key in repeats[0][0]}
        per_ruleset[ruleset] = {**{k: round(v, 3) for k, v in phases.items()}, **repeats[0][1]}
    total_s = sum(per_ruleset[r]["total_s"] for r in RULESETS)

    with open(args.published) as f:
        published = json.load(f)
    reproduced = sum(round(float(runs[r][0][2][name]), 4) == value
                     for r in RULESETS for name, value in published[r].items())
    expected = sum(len(published[r]) for r in RULESETS)

    results = {
        "what": "score the whole AlgoPerf v0.5 archive (both rulesets): read, rules, "
                "bootstrap x1000, report with plot",
        "machine": machine_info, "goal_s": GOAL_S, "repeats": args.repeats,
        "unpack_s": round(unpack_s, 3), "import_s": round(import_s, 3),
        "scoring_s": round(total_s, 3), "meets_goal": total_s < GOAL_S,
        "rulesets": per_ruleset,
        "cli_wall_s": {r: round(v, 3) for r, v in cli_s.items()},
        "cli_wall_total_s": round(sum(cli_s.values()), 3),
        "published_scores_reproduced": f"{reproduced}/{expected}",
        "date": time.strftime("%Y-%m-%d"),
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print_summary(results, args.output)
    return results


def print_summary(results: dict, output: str) -> None:
    print(f"Scoring the AlgoPerf v0.5 archive on {results['machine']['cores']} cores "
          f"({results['machine']['cpu']}; load average at start "
          f"{results['machine']['load_average_1_5_15min_at_start']})")
    print(f"  unpack (not part of scoring): {results['unpack_s']:.2f} s; "
          f"imports: {results['import_s']:.2f} s")
    for ruleset, r in results["rulesets"].items():
        print(f"  {ruleset:<16} {r['trials']:>5} trials {r['evals']:>7} evals: read "
              f"{r['read_s']:.2f} s, rules {r['rules_s']:.2f} s, bootstrap "
              f"{r['bootstrap_s']:.2f} s, report {r['report_s']:.2f} s = {r['total_s']:.2f} s")
    verdict = "meets" if results["meets_goal"] else "MISSES"
    print(f"  whole archive: {results['scoring_s']:.2f} s ({verdict} the {results['goal_s']:g} s "
          f"goal); end to end through the CLI incl. Python start: "
          f"{results['cli_wall_total_s']:.2f} s")
    print(f"  published scores reproduced: {results['published_scores_reproduced']}")
    print(f"  wrote {os.path.relpath(output, REPO)}")


if __name__ == "__main__":
    main()
