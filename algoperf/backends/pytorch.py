"""PyTorch backend: DDP set-up, device-synchronised clock, checkpoints, seeding."""
import os
import random
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
import torch.distributed as dist

from algoperf import checkpoint_state, clocks, pytorch_utils


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


class PyTorchBackend:
    name = "pytorch"
    checkpoint_name = "checkpoint.pt"

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

    # What ``clock`` reads (algoperf.clocks); the runner sets the trial's.
    read_time = staticmethod(clocks.reader(clocks.WALL))

    def clock(self, *wait_for) -> float:
        """``read_time()`` after all queued device work is done, agreed across processes
        (max). (``wait_for``: the arrays a step produced; a CUDA synchronisation waits for
        all.)"""
        if self._cuda:
            torch.cuda.synchronize()
        now = self.read_time()
        if self.use_ddp:
            now = pytorch_utils.sync_ddp_time(now, self.device)
        return now

    def barrier(self) -> None:
        if self.use_ddp:
            dist.barrier()

    # --- collectives over processes, on numpy arrays (workloads' eval loops) ---------------
    def all_sum(self, values: np.ndarray) -> np.ndarray:
        """Elementwise sum over processes, in float64."""
        values = np.asarray(values, dtype=np.float64)
        if not self.use_ddp:
            return values
        tensor = torch.as_tensor(values, device=self.device)
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()

    def all_gather(self, value: np.ndarray) -> List[np.ndarray]:
        """Every process's ``value`` (same shape and dtype everywhere), in rank order."""
        if not self.use_ddp:
            return [value]
        tensor = torch.as_tensor(np.ascontiguousarray(value), device=self.device)
        out = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(out, tensor)
        return [o.cpu().numpy() for o in out]

    @property
    def has_accelerator(self) -> bool:
        return self._cuda

    # A process's graph batch is one packed graph (DDP splits over processes, not inside one).
    graph_batch_shards = None

    def explain_failure(self, error: BaseException) -> str:
        """Nothing to add: ``describe_failure`` already names the submission's line."""
        del error
        return ""

    def info(self) -> Dict[str, Any]:
        info = {"framework": "pytorch", "torch_version": torch.__version__,
                "world_size": self.world_size, "device": str(self.device)}
        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(self.n_gpus)]
            info["cuda_version"] = torch.version.cuda
        return info

    # --- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self, path: str, params, model_state, optimizer_state,
                        extra: Dict[str, Any]) -> List[Tuple[str, str]]:
        """Model, submission state, RNG states and the harness's ``extra`` in one atomic file.

        Returns the values of the submission's state that could not be saved, as
        ``(path inside the state, why)`` (``algoperf.checkpoint_state``)."""
        model = _unwrap(params)
        names = {id(p): name for name, p in model.named_parameters()}
        opt, unsaved = checkpoint_state.encode(optimizer_state, names, _is_array)
        mstate, unsaved_model = checkpoint_state.encode(model_state, names, _is_array,
                                                        root="model_state")
        state = {
            "params": model.state_dict(),
            "model_state": mstate,
            "optimizer_state": opt,
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            "extra": extra,
        }
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            writer = _WriteErrorKeeper(f)
            try:
                torch.save(state, writer)
            except RuntimeError:
                if writer.error is not None:  # torch hides the OSError (a full disk) behind it
                    raise writer.error from None
                raise
        os.replace(tmp, path)
        return unsaved + unsaved_model

    def load_checkpoint(self, path: str, params, model_state, optimizer_state
                        ) -> Tuple[Any, Any, Any, Dict[str, Any]]:
        state = torch.load(path, map_location=self.device, weights_only=False)
        model = _unwrap(params)
        model.load_state_dict(state["params"])
        named = dict(model.named_parameters())
        optimizer_state = checkpoint_state.restore(optimizer_state, state["optimizer_state"],
                                                   named)
        model_state = checkpoint_state.restore(model_state, state["model_state"], named,
                                               root="model_state")
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        return params, model_state, optimizer_state, state["extra"]


class _WriteErrorKeeper:
    """A file for ``torch.save`` that remembers the OSError of a failed write."""

    def __init__(self, f):
        self._f, self.error = f, None

    def write(self, data):
        try:
            return self._f.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self):
        return self._f.flush()


def _is_array(value: Any) -> bool:
    return torch.is_tensor(value) or isinstance(value, np.ndarray)
