"""K-FAC factor cost: reduce vs expand on the layer shapes of the benchmark's models.

For a layer with inputs a [N, R, D_in] and output gradients g [N, R, D_out], expand forms
A, G from N*R rows (cost ~ N R (D_in^2 + D_out^2)), reduce from N rows after summing over R
(cost ~ N R (D_in + D_out) + N (D_in^2 + D_out^2)): a saving of up to R in the outer
products. This command times ``expand_factors`` and ``reduce_factors`` (bias folded in, as the
optimizer calls them) on ViT-S/16 and WRN-16-4 shapes at a CPU-sized batch, and prints
expand/reduce ratios measured in one run. The GNN's node and edge MLP layers (ogbg: inputs
concatenate 4 latent-256 vectors) work on a flat packed batch of ragged graphs: they are
timed through ``expand_factors_segments`` / ``reduce_factors_segments`` with per-row graph
ids, at ogbg-molpcba's mean sizes (about 26 nodes and 2 x 28 directed edges per graph).

    python -m benchmarks.kfac_factor_cost [--batch 8] [--repeats 5]
"""
import argparse
import statistics
import time

import torch

from benchmarks import results_io
from submissions.optimizers.kfac import factors


# name -> (R weight-sharing positions, D_in, D_out)
LAYERS = {
    "vit_s16_qkv (197 tokens, 384->1152)": (197, 384, 1152),
    "vit_s16_mlp_in (197 tokens, 384->1536)": (197, 384, 1536),
    "vit_s16_mlp_out (197 tokens, 1536->384)": (197, 1536, 384),
    "wrn16_4_conv3 (8x8 pixels, 256*9->256)": (64, 256 * 9, 256),
    "wrn16_4_conv1 (32x32 pixels, 64*9->64)": (1024, 64 * 9, 64),
}
# name -> (mean rows per graph, D_in, D_out); rows per graph drawn uniformly around the mean.
GRAPH_LAYERS = {
    "ogbg_node_mlp (~26 nodes/graph, 1024->256)": (26, 1024, 256),
    "ogbg_edge_mlp (~56 edges/graph, 1024->256)": (56, 1024, 256),
}


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, kernels)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no_save", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for name, (positions, d_in, d_out) in LAYERS.items():
        a = factors.append_ones(torch.randn(args.batch, positions, d_in))
        g = torch.randn(args.batch, positions, d_out)
        expand_s = _time(lambda: factors.expand_factors(a, g), args.repeats)
        reduce_s = _time(lambda: factors.reduce_factors(a, g), args.repeats)
        rows.append({"layer": name, "R": positions, "d_in": d_in, "d_out": d_out,
                     "expand_ms": round(expand_s * 1e3, 3), "reduce_ms": round(reduce_s * 1e3, 3),
                     "expand_over_reduce": round(expand_s / reduce_s, 2)})
        print(f"{name:<42} expand {expand_s * 1e3:9.2f} ms   reduce {reduce_s * 1e3:8.2f} ms"
              f"   expand/reduce {expand_s / reduce_s:6.1f}x")
    for name, (mean_rows, d_in, d_out) in GRAPH_LAYERS.items():
        sizes = torch.randint(mean_rows // 2, mean_rows * 3 // 2 + 1, (args.batch,))
        ids = torch.repeat_interleave(torch.arange(args.batch), sizes)
        a = factors.append_ones(torch.randn(len(ids), d_in))
        g = torch.randn(len(ids), d_out)
        expand_s = _time(lambda: factors.expand_factors_segments(a, g, ids, args.batch),
                         args.repeats)
        reduce_s = _time(lambda: factors.reduce_factors_segments(a, g, ids, args.batch),
                         args.repeats)
        rows.append({"layer": name, "R": mean_rows, "d_in": d_in, "d_out": d_out,
                     "expand_ms": round(expand_s * 1e3, 3), "reduce_ms": round(reduce_s * 1e3, 3),
                     "expand_over_reduce": round(expand_s / reduce_s, 2)})
        print(f"{name:<42} expand {expand_s * 1e3:9.2f} ms   reduce {reduce_s * 1e3:8.2f} ms"
              f"   expand/reduce {expand_s / reduce_s:6.1f}x")
    if not args.no_save:
        results_io.save("kfac_factor_cost",
                        {"batch": args.batch, "repeats": args.repeats, "rows": rows})


if __name__ == "__main__":
    main()
