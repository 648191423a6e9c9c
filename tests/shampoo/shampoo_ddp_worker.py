"""Worker for test_shampoo_ddp: trains a small MLP with Shampoo under torchrun (gloo) or in
one process, on the same global batches, and writes the final parameters (rank 0).

Usage: python shampoo_ddp_worker.py OUT.pt   (WORLD_SIZE / RANK from torchrun, else 1 / 0)
"""
import os
import sys

import torch
import torch.distributed as dist

from submissions.optimizers.shampoo import Shampoo

GLOBAL_BATCH, STEPS = 16, 12


def main(out_path: str) -> None:
    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    torch.manual_seed(0)
    # float64: with epsilon 1e-8, near-null factor directions amplify float32 round-off in
    # the all-reduce by up to eps^-1/2 = 1e4; float64 leaves only the logic to compare.
    model = torch.nn.Sequential(torch.nn.Linear(8, 12), torch.nn.Tanh(),
                                torch.nn.Linear(12, 4)).double()
    if world > 1:
        dist.init_process_group("gloo")
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = Shampoo(model.parameters(), lr=0.05, betas=(0.9, 0.99), epsilon=1e-8,
                  momentum=0.5, weight_decay=0.01, precondition_frequency=3,
                  max_preconditioner_dim=8, use_nadam=True, precondition_1d=True)
    gen = torch.Generator().manual_seed(1)
    local = GLOBAL_BATCH // world
    for _ in range(STEPS):
        x = torch.randn(GLOBAL_BATCH, 8, generator=gen, dtype=torch.float64)
        y = torch.randn(GLOBAL_BATCH, 4, generator=gen, dtype=torch.float64)
        x, y = x[rank * local:(rank + 1) * local], y[rank * local:(rank + 1) * local]
        opt.zero_grad()
        # Mean over the local half; DDP averages over ranks: the global-batch mean gradient.
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    if rank == 0:
        module = model.module if world > 1 else model
        torch.save({k: v.detach().clone() for k, v in module.state_dict().items()}, out_path)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
