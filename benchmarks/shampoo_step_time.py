"""Shampoo's amortised step time vs NAdamW, and the share of it spent in root computations.

For each case (a model's parameter list) both optimizers get the same random gradients:

    NAdamW step            t_N = mean time of ``NAdamW.step()``
    Shampoo step           t_S = mean time of a preconditioned ``Shampoo.step()`` that does
                                 not refresh roots (factor EMAs, grafting, preconditioning)
    one root refresh       t_R = eigendecompositions of every factor (``root_seconds``)
    amortised Shampoo      t_S + t_R / f        (f = the precondition frequency that runs use)
    root share             (t_R / f) / (t_S + t_R / f)

Tiny-tier cases also time the model's forward + backward (the workload's model_fn and
loss_fn on one training batch of its generated data at the baseline batch size: t_FB) and
report the training-step ratio (t_FB + amortised Shampoo) / (t_FB + t_N). Settings are the
submission's: max_preconditioner_dim 1024, Adam grafting, use_nadam, 1-D parameters
preconditioned; f = the submission's tiny-scaled frequency for the
tiny workloads, AlgoPerf's 100 for ViT-S/16.

ViT-S/16 shapes (AlgoPerf's imagenet_vit model: width 384, depth 12, MLP 1536, 1000 classes):
patch embedding 384x768 + bias, position embedding 196x384, per block LayerNorm 2x(384, 384),
qkv 1152x384 + 1152, proj 384x384 + 384, MLP 1536x384 + 1536 and 384x1536 + 384, final
LayerNorm, head 1000x384 + 1000 (22.0M parameters).

    python -m benchmarks.shampoo_step_time [--repeats 5] [--cases cifar_wrn_tiny,vit_s16]

Torch runs on one thread (the project's CPU timing convention): ratios, not absolute times,
are the result; run on an idle machine.
"""
import argparse
import os
import statistics
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch

from benchmarks import results_io
from submissions.optimizers.nadamw import NAdamW
from submissions.optimizers.shampoo import Shampoo
from submissions.shampoo import submission as shampoo_submission

ALGOPERF_FREQUENCY = 100


def vit_s16_shapes() -> List[Tuple[int, ...]]:
    """Parameter shapes of ViT-S/16 (module docstring)."""
    width, mlp, depth = 384, 1536, 12
    shapes = [(width, 16 * 16 * 3), (width,), (196, width)]
    for _ in range(depth):
        shapes += [(width,), (width,), (3 * width, width), (3 * width,), (width, width),
                   (width,), (width,), (width,), (mlp, width), (mlp,), (width, mlp), (width,)]
    shapes += [(width,), (width,), (1000, width), (1000,)]
    return shapes


def _shampoo(params, frequency: int) -> Shampoo:
    hp = shampoo_submission.first_order.as_hyperparameters(shampoo_submission.HPARAMS)
    opt = shampoo_submission.make_optimizer(params, hp)
    for group in opt.param_groups:
        group["precondition_frequency"] = frequency
        group["start_preconditioning_step"] = frequency
    return opt


def _nadamw(params) -> NAdamW:
    hp = shampoo_submission.HPARAMS
    return NAdamW(params, lr=hp["learning_rate"],
                  betas=(1 - hp["one_minus_beta1"], 1 - hp["one_minus_beta2"]),
                  eps=1e-8, weight_decay=hp["weight_decay"])


def _mean_time(fn: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.mean(times)


def time_optimizers(params: List[torch.nn.Parameter], frequency: int,
                    repeats: int) -> Dict[str, float]:
    """t_N, t_S, t_R in seconds (module docstring) on fixed random gradients."""
    gen = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    nadamw = _nadamw(params)
    nadamw.step()  # state allocation off the clock
    t_n = _mean_time(nadamw.step, repeats)

    shampoo = _shampoo(params, frequency)
    # Step 1 with f = 1 computes the roots once (t_R); later steps precondition without
    # refreshing (f made larger than the steps we take).
    for group in shampoo.param_groups:
        group["precondition_frequency"] = group["start_preconditioning_step"] = 1
    shampoo.step()
    t_r = shampoo.root_seconds
    for group in shampoo.param_groups:
        group["precondition_frequency"] = 10 ** 9
    shampoo.step()
    t_s = _mean_time(shampoo.step, repeats)
    return {"nadamw_s": t_n, "shampoo_step_s": t_s, "root_refresh_s": t_r}


def _tiny_case(name: str, data_dir: Optional[str]):
    """(params, forward-backward closure, batch size, frequency) for a registered tiny
    workload on a real training batch of its (generated) data, or None when the registry
    does not have it."""
    from algoperf import random_utils, spec
    from algoperf.runner import global_batch_size_for
    from workloads import registry
    if name not in registry.names():
        return None
    workload = registry.get_workload(name)
    data_dir = registry.resolve_data_dir(workload, data_dir)
    registry.check_data(workload, data_dir)  # generates the tiny data on first use
    batch_size = global_batch_size_for(shampoo_submission, workload)
    rng = random_utils.PRNGKey(0)
    batch = next(workload._build_input_queue(rng, "train", data_dir, batch_size))
    model, model_state = workload.init_model_fn(rng)
    hp = shampoo_submission.first_order.as_hyperparameters(shampoo_submission.HPARAMS)
    frequency = shampoo_submission.effective_frequency(hp, workload.step_hint)

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        logits, _ = workload.model_fn(model, batch, model_state, spec.ForwardPassMode.TRAIN,
                                      rng, update_batch_norm=True)
        losses = workload.loss_fn(batch["targets"], logits, batch.get("weights"))
        (losses["summed"] / losses["n_valid_examples"]).backward()
    params = [p for p in model.parameters() if p.requires_grad]
    return params, forward_backward, batch_size, frequency


def _row(name: str, frequency: int, times: Dict[str, float], n_params: int,
         forward_backward_s: Optional[float] = None) -> dict:
    amortised = times["shampoo_step_s"] + times["root_refresh_s"] / frequency
    row = {"case": name, "parameters": n_params, "precondition_frequency": frequency,
           "nadamw_step_ms": round(times["nadamw_s"] * 1e3, 3),
           "shampoo_step_no_refresh_ms": round(times["shampoo_step_s"] * 1e3, 3),
           "root_refresh_ms": round(times["root_refresh_s"] * 1e3, 1),
           "shampoo_amortised_ms": round(amortised * 1e3, 3),
           "optimizer_ratio_shampoo_over_nadamw": round(amortised / times["nadamw_s"], 2),
           "root_share_of_shampoo": round(times["root_refresh_s"] / frequency / amortised, 3)}
    if forward_backward_s is not None:
        row["forward_backward_ms"] = round(forward_backward_s * 1e3, 3)
        row["train_step_ratio_shampoo_over_nadamw"] = round(
            (forward_backward_s + amortised) / (forward_backward_s + times["nadamw_s"]), 2)
    return row


def _print(row: dict) -> None:
    line = (f"{row['case']:<16} f={row['precondition_frequency']:<4} NAdamW "
            f"{row['nadamw_step_ms']:8.2f} ms | Shampoo {row['shampoo_step_no_refresh_ms']:8.2f}"
            f" ms + refresh {row['root_refresh_ms']:8.1f} ms / f = "
            f"{row['shampoo_amortised_ms']:8.2f} ms | optimizer ratio "
            f"{row['optimizer_ratio_shampoo_over_nadamw']:6.1f}x | roots "
            f"{100 * row['root_share_of_shampoo']:4.1f}%")
    if "train_step_ratio_shampoo_over_nadamw" in row:
        line += (f" | fwd+bwd {row['forward_backward_ms']:.1f} ms, train-step ratio "
                 f"{row['train_step_ratio_shampoo_over_nadamw']:.2f}x")
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", default="cifar_wrn_tiny,mnist_tiny,imagenet_vit_tiny,"
                        "ogbg_tiny,vit_s16")
    parser.add_argument("--data_dir", default=None,
                        help="generated tiny data (default: the harness's generated-data folder)")
    parser.add_argument("--no_save", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, skipped = [], []
    for name in args.cases.split(","):
        if name == "vit_s16":
            torch.manual_seed(0)
            params = [torch.nn.Parameter(torch.randn(s) * 0.02) for s in vit_s16_shapes()]
            times = time_optimizers(params, ALGOPERF_FREQUENCY, args.repeats)
            row = _row(name, ALGOPERF_FREQUENCY, times, sum(p.numel() for p in params))
        else:
            case = _tiny_case(name, args.data_dir)
            if case is None:
                skipped.append(name)
                print(f"{name:<16} skipped (not in the registry)")
                continue
            params, forward_backward, batch, frequency = case
            forward_backward()
            fb = _mean_time(forward_backward, args.repeats)
            times = time_optimizers(params, frequency, args.repeats)
            row = _row(name, frequency, times, sum(p.numel() for p in params), fb)
            row["batch"] = batch
        rows.append(row)
        _print(row)
    if not args.no_save:
        results_io.save("shampoo_step_time",
                        {"repeats": args.repeats, "rows": rows, "skipped": skipped,
                         "load_average_1min": round(os.getloadavg()[0], 2)})


if __name__ == "__main__":
    main()
