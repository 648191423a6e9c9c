"""How much K-FAC's step differs from a gradient step, per tiny workload and flavour.

Why K-FAC saves steps on one workload and not on another shows in its curvature. After
``--steps`` training steps at the flavour's default point (the first point of its
``tuning_search_space_tiny.json``), for every covered layer with factors A [D_in, D_in],
G [D_out, D_out], eigenvalues s_A, s_G and pi-split damping (dA, dG), dA * dG = lambda:

    above_damping   fraction of the Kronecker eigenvalues s_A,i * s_G,j that exceed lambda:
                    the directions in which the curvature, not the damping, sets the step
                    (0: K-FAC is a rescaled gradient step)
    log10_kappa     log10 of the damped curvature's condition number,
                    max (s_A + dA)(s_G + dG) / min (s_A + dA)(s_G + dG): how far apart the
                    step sizes of K-FAC's directions lie (0: all alike, as in SGD)

and, over all covered layers at once, on the last step's gradient g:

    cosine          cos(P g, g) with P g the preconditioned direction the step takes
                    (1: the same direction as gradient descent)

The per-layer figures are reported as their median over layers (and the key-layer fallback
of reduce shows as that layer's expand factors).

    python -m benchmarks.kfac_curvature_stats [--workloads cifar_wrn_tiny] [--steps 30]

Results go to ``benchmarks/results/kfac_curvature_stats.json`` (merged by workload).
"""
import argparse
import os
import statistics
from typing import Dict

import torch

from algoperf import random_utils, runner, submission_loader
from algoperf.search_space import hyperparameters_from_dict
from algoperf.suite.plan import shipped_tiny_points
from submissions.optimizers.kfac import inverse as ki
from workloads import registry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAVOURS = ("kfac_reduce", "kfac_expand")
WORKLOADS = ("cifar_wrn_tiny", "ogbg_tiny", "imagenet_vit_tiny")


def layer_statistics(A: torch.Tensor, G: torch.Tensor, damping: float) -> Dict[str, float]:
    s_a, _ = ki.eigh(A.double())
    s_g, _ = ki.eigh(G.double())
    d_a, d_g = ki.pi_split(A, G, damping)
    kron = torch.outer(s_a, s_g)
    damped = torch.outer(s_a + d_a, s_g + d_g)
    return {"above_damping": float((kron > damping).double().mean()),
            "log10_kappa": float(torch.log10(damped.max() / damped.min()))}


def measure(workload_name: str, flavour: str, steps: int) -> Dict:
    workload = registry.get_workload(workload_name)
    data_dir = registry.resolve_data_dir(workload, None)
    registry.check_data(workload, data_dir)
    submission = submission_loader.load_submission(
        os.path.join(REPO, "submissions", flavour, "submission.py"))
    hp = hyperparameters_from_dict(shipped_tiny_points(flavour)[0])
    queue = workload._build_input_queue(random_utils.PRNGKey(0), "train", data_dir,
                                        runner.global_batch_size_for(submission, workload))
    params, model_state = workload.init_model_fn(random_utils.PRNGKey(0))
    state = submission.init_optimizer_state(workload, params, model_state, hp,
                                            random_utils.PRNGKey(1))
    for step in range(steps):
        state, params, model_state = submission.update_params(
            workload, params, workload.model_params_types, model_state, hp, next(queue),
            workload.loss_type, state, [], step, random_utils.PRNGKey(step))
    opt = state["optimizer"]
    damping = opt.param_groups[0]["damping"]
    per_layer, dot, norm_g, norm_p = [], 0.0, 0.0, 0.0
    for layer in opt._layers:  # the layers and gradient matrices the step itself used
        factors = opt.factors(layer.module)
        if factors is None or layer.module.weight.grad is None:
            continue
        per_layer.append(layer_statistics(*factors, damping))
        grad = layer.grad_matrix()
        direction = opt.precondition(layer, grad, damping)
        dot += float((direction * grad).sum())
        norm_g += float((grad * grad).sum())
        norm_p += float((direction * direction).sum())
    return {"steps": steps, "damping": damping, "layers": len(per_layer),
            "above_damping_median": round(statistics.median(
                s["above_damping"] for s in per_layer), 4),
            "log10_kappa_median": round(statistics.median(
                s["log10_kappa"] for s in per_layer), 2),
            "cosine_step_gradient": round(dot / (norm_g * norm_p) ** 0.5, 4)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--no_save", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    for w in args.workloads.split(","):
        results[w] = {f: measure(w, f, args.steps) for f in FLAVOURS}
        for f, r in results[w].items():
            print(f"{w:18s} {f:12s} layers {r['layers']:3d}  above damping "
                  f"{r['above_damping_median']:.3f}  log10 kappa {r['log10_kappa_median']:5.2f}"
                  f"  cos(step, grad) {r['cosine_step_gradient']:.3f}", flush=True)
    if args.no_save:
        return
    from benchmarks import results_io
    results_io.save("kfac_curvature_stats", {"workloads": results}, merge_into="workloads")


if __name__ == "__main__":
    main()
