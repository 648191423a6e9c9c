"""PyTorch process set-up, with AlgoPerf's names (``pytorch_setup`` is what submissions import).

Under ``torchrun`` every process sees ``LOCAL_RANK``; that is how a submission learns it runs
under DistributedDataParallel and must all-reduce its loss (``torch.distributed.nn``).
"""
import atexit
import os
from typing import Tuple

import torch
import torch.distributed as dist
# Imported before any process group exists, on purpose: its collectives take
# ``group=group.WORLD`` as a default argument, evaluated at import. Imported after
# ``init_process_group`` (a submission's top-level import, loaded once the runner has
# joined), those defaults hold the world group for good, destroy_process_group cannot free it,
# and its gloo threads outlive the interpreter: rank 1 then aborts at exit (SIGABRT) after a
# successful run.
import torch.distributed.nn  # noqa: F401
import torch.nn.functional as F
from torch import nn


def pytorch_setup() -> Tuple[bool, int, torch.device, int]:
    """Return (use_pytorch_ddp, rank, device, n_gpus) for this process."""
    use_pytorch_ddp = "LOCAL_RANK" in os.environ
    rank = int(os.environ["LOCAL_RANK"]) if use_pytorch_ddp else 0
    device = torch.device(f"cuda:{rank}" if torch.cuda.is_available() else "cpu")
    n_gpus = torch.cuda.device_count()
    return use_pytorch_ddp, rank, device, n_gpus


def pytorch_init(use_pytorch_ddp: bool, rank: int) -> None:
    """Join the process group (NCCL on GPUs, gloo on CPU) and silence logging off rank 0."""
    if torch.cuda.is_available():
        # cuDNN picks the fastest convolution algorithms for the fixed shapes of a workload.
        torch.backends.cudnn.benchmark = True
    if not use_pytorch_ddp:
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        # Left to interpreter finalisation, gloo's worker threads outlive Python and the process
        # aborts (SIGABRT, "terminate called without an active exception"), which torchrun
        # reports as a failed run after a successful one.
        atexit.register(_leave_process_group)
    if rank != 0:
        from absl import logging
        logging.set_verbosity(logging.WARNING)


def _leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sync_ddp_time(time: float, device: torch.device) -> float:
    """The slowest process's time, so every rank agrees on the clock."""
    time_tensor = torch.tensor(time, dtype=torch.float64, device=device)
    dist.all_reduce(time_tensor, op=dist.ReduceOp.MAX)
    return time_tensor.item()


def update_batch_norm_fn(module: nn.Module, update_batch_norm: bool) -> None:
    """Freeze (momentum 0) or restore batch-norm running statistics; use with ``module.apply``."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if not update_batch_norm:
            if not hasattr(module, "momentum_backup"):
                module.momentum_backup = module.momentum
            module.momentum = 0.0
        elif hasattr(module, "momentum_backup"):
            module.momentum = module.momentum_backup


class CustomDropout(nn.Module):
    """Dropout whose rate is given per call (the API passes ``dropout_rate`` to ``model_fn``)."""

    def forward(self, x: torch.Tensor, p: float) -> torch.Tensor:
        return F.dropout(x, p, training=self.training)
