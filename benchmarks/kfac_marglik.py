"""K-FAC marginal-likelihood hyperparameter learning: the cost of one marginal-likelihood step,
reduce vs expand, on WRN-16-4, and the self-tuning submission on cifar_wrn_tiny.

1. One marginal-likelihood step (Immer et al. 2021; ``submissions/optimizers/kfac/marglik.py``)
   on the real WRN-16-4 (``workloads.cifar_wrn.models.WideResNet(16, 4)``, 32x32 inputs):
     curvature  the K-FAC GGN at the current weights on ``--batches`` batches of ``--batch``
                images (forward, one sampled-label backward, the flavour's factors);
     eigen      the eigenvalues of every layer's two factors;
     hyper      ``--hyper_steps`` Adam steps on the log prior precisions (closed-form gradient).
   The factor shapes, hence eigen and hyper, are the same for both flavours; curvature is
   where reduce saves (its Conv2d factors use the mean patch, not the R = H*W patches).
   Flavours alternate within each repeat (same minutes of the machine), medians reported, and
   the ratio is of the medians measured in this one run.
2. ``submissions/kfac_marglik`` (both flavours) and the fixed-decay K-FAC baselines at the same
   self-tuning point (``kfac_reduce``, ``kfac_expand``, weight decay 5e-4) on cifar_wrn_tiny
   under the self-tuning ruleset, one after the other, seed 0: submission time and steps to
   the validation target, the learned prior precisions and the weight decays they give
   (wd = delta / N), against the baselines' decays (their tuning_search_space_tiny.json and
   self-tuning DEFAULTS, NAdamW's target-setting point), and log ML over training (series in
   the JSON, plot in benchmarks/results/kfac_marglik.png).

    python -m benchmarks.kfac_marglik [--batch 8] [--batches 4] [--repeats 3] [--skip_runs]
"""
import argparse
import copy
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import pandas as pd
import torch

from benchmarks import results_io
from submissions import kfac_baseline
from submissions.optimizers.kfac import KFAC, marglik
from workloads.cifar_wrn.models import WideResNet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOAD = "cifar_wrn_tiny"
RUNS = {"kfac_marglik (reduce)": "submissions/kfac_marglik/submission.py",
        "kfac_marglik (expand)": "submissions/kfac_marglik/submission_expand.py",
        "kfac_reduce (fixed wd)": "submissions/kfac_reduce/submission.py",
        "kfac_expand (fixed wd)": "submissions/kfac_expand/submission.py"}


# ------------------------------------------------------------ 1. the cost of one ML step

def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def ml_step(model, optimizer, images, hyper_steps, num_train_examples):
    """One marginal-likelihood step; returns {part: seconds}."""
    def curvature():
        for x in images:
            optimizer.update_curvature(model(x), "cross_entropy")

    def eigen():
        return [marglik.block_eigenvalues(optimizer.factors(m)[::-1])
                for m in optimizer.covered_modules]

    _, curvature_s = _timed(curvature)
    eigvals, eigen_s = _timed(eigen)
    with torch.no_grad():
        sq_norms = torch.stack([sum(p.pow(2).sum() for p in m.parameters())
                                for m in optimizer.covered_modules])
    eta = torch.zeros(len(eigvals))
    _, hyper_s = _timed(lambda: marglik.maximise_log_prior_precision(
        eta, sq_norms, eigvals, num_train_examples, steps=hyper_steps))
    return {"curvature_s": curvature_s, "eigen_s": eigen_s, "hyper_s": hyper_s,
            "total_s": curvature_s + eigen_s + hyper_s}


def ml_step_cost(batch, batches, hyper_steps, repeats):
    torch.manual_seed(0)
    base = WideResNet(depth=16, widen=4).train()
    images = [torch.randn(batch, 3, 32, 32) for _ in range(batches)]
    setups = {}
    for flavour in ("expand", "reduce"):
        model = copy.deepcopy(base)
        setups[flavour] = (model, KFAC(model, flavour=flavour, damping=0.01))
    times = {f: [] for f in setups}
    for repeat in range(repeats + 1):  # the first round warms up (allocations, kernels)
        for flavour, (model, optimizer) in setups.items():
            t = ml_step(model, optimizer, images, hyper_steps, 45_000)
            if repeat:
                times[flavour].append(t)
                print(f"  {flavour:<7} " + "  ".join(f"{k} {v:7.3f}" for k, v in t.items()))
    medians = {f: {k: round(statistics.median(t[k] for t in ts), 4) for k in ts[0]}
               for f, ts in times.items()}
    sizes = [(m.weight.shape[0], m.weight[0].numel() + (m.bias is not None))
             for m in setups["reduce"][1].covered_modules]
    images_seen = batch * batches
    per_image = {f: m["curvature_s"] / images_seen for f, m in medians.items()}
    # Immer et al. refit the Laplace GGN on the whole training set at every step: the
    # curvature part then scales with N, eigen and hyper do not.
    full_pass = {f: round(per_image[f] * 45_000 + m["eigen_s"] + m["hyper_s"], 1)
                 for f, m in medians.items()}
    return {"model": "WRN-16-4 (2.75M parameters), 32x32 inputs, BatchNorm in train mode",
            "curvature_ms_per_image": {f: round(v * 1e3, 2) for f, v in per_image.items()},
            "extrapolated_s_with_a_45000_image_curvature_pass": full_pass,
            "reduce_over_expand_extrapolated": round(full_pass["reduce"]
                                                     / full_pass["expand"], 3),
            "batch": batch, "batches": batches, "hyper_steps": hyper_steps,
            "repeats": repeats, "layers (D_out, D_in+bias)": sizes, "median_s": medians,
            "reduce_over_expand_total": round(medians["reduce"]["total_s"]
                                              / medians["expand"]["total_s"], 3),
            "reduce_over_expand_curvature": round(medians["reduce"]["curvature_s"]
                                                  / medians["expand"]["curvature_s"], 3)}


# ------------------------------------------------------------ 2. runs on cifar_wrn_tiny

def run_one(path, experiment_dir, data_dir):
    cmd = [sys.executable, "-m", "algoperf.cli", "run", f"--workload={WORKLOAD}",
           f"--submission_path={path}", "--tuning_ruleset=self", "--rng_seed=0",
           f"--experiment_dir={experiment_dir}", "--experiment_name=bench",
           f"--data_dir={data_dir}"]
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{path}: {out.stderr[-2000:]}")
    trial = os.path.dirname(glob.glob(os.path.join(experiment_dir, "**", "eval_measurements.csv"),
                                      recursive=True)[0])
    return (pd.read_csv(os.path.join(trial, "eval_measurements.csv")),
            pd.read_csv(os.path.join(trial, "measurements.csv")))


def to_target(evals, target):
    hit = evals[evals["validation/accuracy"] >= target]
    if hit.empty:
        return None, None
    return round(float(hit["score"].iloc[0]), 2), int(hit["global_step"].iloc[0])


def marglik_series(measurements, num_train_examples):
    rows = measurements.dropna(subset=["marglik/log_ml"])
    prefix = "marglik/prior_precision/"
    series = [{"step": int(r["global_step"]), "log_ml": round(float(r["marglik/log_ml"]), 2),
               "log_ml_per_example": round(float(r["marglik/log_ml_per_example"]), 4),
               "mean_weight_decay": float(r["marglik/mean_weight_decay"])}
              for _, r in rows.iterrows()]
    last = rows.iloc[-1]
    precisions = {c[len(prefix):]: round(float(last[c]), 4)
                  for c in rows.columns if c.startswith(prefix)}
    return series, precisions, {k: v / num_train_examples for k, v in precisions.items()}


def baseline_decays():
    out = {"kfac DEFAULTS (self-tuning, both flavours)": kfac_baseline.DEFAULTS["weight_decay"]}
    for name in ("kfac_reduce", "kfac_expand", "nadamw"):
        with open(os.path.join(REPO, "submissions", name, "tuning_search_space_tiny.json")) as f:
            points = json.load(f)
        out[f"{name} tuning_search_space_tiny.json"] = sorted({p["weight_decay"] for p in points})
    with open(os.path.join(REPO, "workloads", "cifar_wrn", "tiny_targets.json")) as f:
        out["nadamw target-setting point (tiny_targets.json; AdamW-style p(1 - lr wd), lr "
            "0.003)"] = json.load(f)["point"]["weight_decay"]
    return out


def cifar_runs(data_dir):
    from workloads import registry
    workload = registry.get_workload(WORKLOAD)
    n, target = workload.num_train_examples, workload.validation_target_value
    results = {}
    for name, path in RUNS.items():
        with tempfile.TemporaryDirectory() as tmp:
            start = time.time()
            evals, measurements = run_one(path, tmp, data_dir)
            wall = time.time() - start
        seconds, steps = to_target(evals, target)
        entry = {"submission": path, "time_to_target_s": seconds, "steps_to_target": steps,
                 "run_wall_s": round(wall, 1)}
        if "marglik/log_ml" in measurements.columns:
            series, precisions, decays = marglik_series(measurements, n)
            entry.update({"log_ml_series": series, "learned_prior_precision": precisions,
                          "learned_weight_decay": {k: float(f"{v:.3g}")
                                                   for k, v in decays.items()}})
        print(f"  {name:<24} target {target} at {seconds} s, step {steps}")
        results[name] = entry
    return {"workload": WORKLOAD, "num_train_examples": n, "validation_target": target,
            "ruleset": "self", "rng_seed": 0, "runs": results,
            "baseline_weight_decays": baseline_decays()}


def plot(cifar, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, run in cifar["runs"].items():
        if "log_ml_series" not in run:
            continue
        s = run["log_ml_series"]
        left.plot([r["step"] for r in s], [r["log_ml_per_example"] for r in s], "o-", label=name)
        decays = run["learned_weight_decay"]
        right.plot(range(len(decays)), list(decays.values()), "o", label=f"{name}, learned")
        right.set_xticks(range(len(decays)), list(decays), rotation=70, fontsize=7)
    left.set(xlabel="step", ylabel="log marginal likelihood / N",
             title="Laplace-K-FAC log ML over training")
    left.legend(fontsize=8)
    right.axhline(kfac_baseline.DEFAULTS["weight_decay"], color="k", ls="--",
                  label="K-FAC baselines' weight decay (5e-4)")
    right.set_yscale("log")
    right.set(ylabel="weight decay (delta / N)", title="learned per-layer decay at the last step")
    right.legend(fontsize=8)
    fig.suptitle(f"{cifar['workload']}, self-tuning, seed 0")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {os.path.relpath(path)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--hyper_steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(),
                                                           "algoperf_data"))
    parser.add_argument("--skip_runs", action="store_true", help="only the ML-step cost")
    parser.add_argument("--no_save", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core for the timed work; the other for the machine
    print("one marginal-likelihood step on WRN-16-4 (seconds):")
    cost = ml_step_cost(args.batch, args.batches, args.hyper_steps, args.repeats)
    for flavour, m in cost["median_s"].items():
        print(f"  median {flavour:<7} " + "  ".join(f"{k} {v:7.3f}" for k, v in m.items()))
    print(f"  reduce / expand: total {cost['reduce_over_expand_total']}, "
          f"curvature {cost['reduce_over_expand_curvature']}")
    payload = {"ml_step_wrn16_4": cost,
               "conditions": "CPU, 2 cores, torch 1 thread per process, runs one after the "
                             "other; another engineer may have been building a container on "
                             "the same machine: absolute times are noisy, compare the ratios "
                             "(measured in this one run)"}
    if not args.skip_runs:
        print(f"{WORKLOAD}, self-tuning:")
        payload["cifar_wrn_tiny"] = cifar_runs(args.data_dir)
    if args.no_save:
        return
    if "cifar_wrn_tiny" in payload:
        plot(payload["cifar_wrn_tiny"], os.path.join(results_io.RESULTS_DIR, "kfac_marglik.png"))
    results_io.save("kfac_marglik", payload)


if __name__ == "__main__":
    main()
