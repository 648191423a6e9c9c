"""PyTorch backend: DDP set-up, device-synchronised clock, checkpoints, seeding."""
import os
import random
import time
from typing import Any, Dict, Tuple

import numpy as np
import torch
import torch.distributed as dist

from algoperf import pytorch_utils


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


class PyTorchBackend:
    name = "pytorch"

    def __init__(self):
        self.use_ddp, self.rank, self.device, self.n_gpus = pytorch_utils.pytorch_setup()
        self._cuda = torch.cuda.is_available()  # asked once: the clock runs every step

    def init(self) -> None:
        pytorch_utils.pytorch_init(self.use_ddp, self.rank)

    @property
    def world_size(self) -> int:
        return pytorch_utils.world_size()

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    def seed(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def clock(self) -> float:
        """Wall time after all queued device work is done, agreed across processes (max)."""
        if self._cuda:
            torch.cuda.synchronize()
        now = time.time()
        if self.use_ddp:
            now = pytorch_utils.sync_ddp_time(now, self.device)
        return now

    def barrier(self) -> None:
        if self.use_ddp:
            dist.barrier()

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's decision for everyone (so all ranks stop at the same step)."""
        if not self.use_ddp:
            return flag
        t = torch.tensor([1 if flag else 0], device=self.device)
        dist.broadcast(t, src=0)
        return bool(t.item())

    def info(self) -> Dict[str, Any]:
        info = {"framework": "pytorch", "torch_version": torch.__version__,
                "world_size": self.world_size, "device": str(self.device)}
        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(self.n_gpus)]
            info["cuda_version"] = torch.version.cuda
        return info

    # --- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self, path: str, params, model_state, optimizer_state,
                        extra: Dict[str, Any]) -> None:
        """Model, optimizer state, RNG states and the harness's ``extra`` in one atomic file."""
        state = {
            "params": _unwrap(params).state_dict(),
            "model_state": model_state,
            "optimizer_state": _state_dicts(optimizer_state),
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            "extra": extra,
        }
        tmp = path + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: str, params, optimizer_state
                        ) -> Tuple[Any, Any, Any, Dict[str, Any]]:
        state = torch.load(path, map_location=self.device, weights_only=False)
        _unwrap(params).load_state_dict(state["params"])
        optimizer_state = _load_state_dicts(optimizer_state, state["optimizer_state"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        return params, state["model_state"], optimizer_state, state["extra"]


def _state_dicts(obj):
    """Replace every object with a ``state_dict`` (optimizers, schedulers) by its state dict."""
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        return {"__state_dict__": obj.state_dict()}
    if isinstance(obj, dict):
        return {k: _state_dicts(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_state_dicts(v) for v in obj)
    return obj


def _load_state_dicts(current, saved):
    """Inverse of ``_state_dicts``: load into the live objects, keep their identity."""
    if isinstance(saved, dict) and "__state_dict__" in saved:
        current.load_state_dict(saved["__state_dict__"])
        return current
    if isinstance(saved, dict) and isinstance(current, dict):
        return {k: _load_state_dicts(current.get(k), v) for k, v in saved.items()}
    if isinstance(saved, (list, tuple)) and isinstance(current, (list, tuple)):
        return type(saved)(_load_state_dicts(c, s) for c, s in zip(current, saved))
    return saved
