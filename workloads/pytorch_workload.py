"""What every PyTorch workload shares: model init, ``model_fn``, input queues, the eval loop.

A concrete workload adds its definition constants and four hooks:
``build_model()``, ``load_arrays(data_dir, split)``, ``preprocess(arrays, train, rng)`` and,
when its metric is not accuracy, ``eval_metric_sums`` / ``finalize_metrics``.

Under DDP each process trains on its slice of the global batch and evaluates its slice of
every eval batch; metric sums are all-reduced, so every example counts exactly once.
"""
from typing import Any, Dict, Iterator, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from algoperf import eval_guard, pytorch_utils, random_utils, spec
from workloads import pytorch_losses
from workloads.datasets import iterators

EVAL_SPLITS = ("eval_train", "validation", "test")


def parameter_types(model: nn.Module) -> Dict[str, spec.ParameterType]:
    """Each parameter's AlgoPerf type, by the kind of module that owns it."""
    types = {}
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            key = f"{module_name}.{param_name}" if module_name else param_name
            types[key] = _parameter_type(module, param_name)
    return types


def _parameter_type(module: nn.Module, param_name: str) -> spec.ParameterType:
    P = spec.ParameterType
    is_bias = param_name == "bias"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return P.BATCH_NORM_BIAS if is_bias else P.BATCH_NORM_SCALE
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
        return P.LAYER_NORM_BIAS if is_bias else P.LAYER_NORM_SCALE
    if isinstance(module, nn.Embedding):
        return P.EMBEDDING
    if isinstance(module, nn.modules.conv._ConvNd):
        return P.BIAS if is_bias else P.CONV_WEIGHT
    return P.BIAS if is_bias else P.WEIGHT


class PyTorchWorkload:
    """Mixin placed before a ``WorkloadDefinition`` subclass."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._use_ddp, self._rank, self._device, _ = pytorch_utils.pytorch_setup()
        self._eval_arrays: Dict[str, Dict[str, np.ndarray]] = eval_guard.HeldOutCache()

    # --- hooks ---------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def load_arrays(self, data_dir: str, split: str) -> Dict[str, np.ndarray]:
        """Arrays of a split: 'train', 'eval_train', 'validation' or 'test'."""
        raise NotImplementedError

    def preprocess(self, arrays: Dict[str, np.ndarray], train: bool,
                   rng: np.random.Generator) -> Dict[str, torch.Tensor]:
        """Numpy batch -> {'inputs', 'targets'} tensors (augmentation only when ``train``)."""
        raise NotImplementedError

    # --- model -----------------------------------------------------------------------------
    def init_model_fn(self, rng: spec.RandomState) -> spec.ModelInitState:
        torch.manual_seed(random_utils.to_int(rng))
        model = self.build_model()
        self._param_shapes = {k: spec.ShapeTuple(p.shape) for k, p in model.named_parameters()}
        self._param_types = parameter_types(model)
        model.to(self._device)
        if self._use_ddp:
            model = DDP(model, device_ids=[self._rank] if self._device.type == "cuda" else None)
        return model, None

    def is_output_params(self, param_key: spec.ParameterKey) -> bool:
        return param_key.removeprefix("module.") in self.output_param_names

    output_param_names: tuple = ()

    def model_fn(self, params: nn.Module, augmented_and_preprocessed_input_batch: Dict[str, Any],
                 model_state: spec.ModelAuxiliaryState, mode: spec.ForwardPassMode,
                 rng: spec.RandomState, update_batch_norm: bool, dropout_rate: float = 0.0):
        del rng
        model = params
        train = mode == spec.ForwardPassMode.TRAIN
        # Module.train() and Module.apply() walk the whole module tree: on a small model that
        # costs more than the step itself, so switch only on a change and visit only the
        # batch-norm layers, found once per model.
        if model.training != train:
            model.train(train)
        if train:
            for module in self._batch_norm_modules(model):
                pytorch_utils.update_batch_norm_fn(module, update_batch_norm)
        with torch.set_grad_enabled(train):
            logits = self.forward(model, augmented_and_preprocessed_input_batch["inputs"],
                                  dropout_rate)
        return logits, model_state

    def _batch_norm_modules(self, model: nn.Module) -> list:
        cached = getattr(self, "_bn_cache", None)
        if cached is None or cached[0] is not model:
            cached = (model, [m for m in model.modules()
                              if isinstance(m, nn.modules.batchnorm._BatchNorm)])
            self._bn_cache = cached
        return cached[1]

    def forward(self, model: nn.Module, inputs: Any, dropout_rate: float) -> torch.Tensor:
        del dropout_rate  # Models with dropout override this.
        return model(inputs)

    # --- loss ------------------------------------------------------------------------------
    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing: float = 0.0):
        return pytorch_losses.softmax_cross_entropy(label_batch, logits_batch, mask_batch,
                                                    label_smoothing)

    # --- data ------------------------------------------------------------------------------
    def _build_input_queue(self, data_rng: spec.RandomState, split: str, data_dir: str,
                           global_batch_size: int, cache: Optional[bool] = None,
                           repeat_final_dataset: Optional[bool] = None,
                           num_batches: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        """Infinite, reshuffled train batches: this process's slice, on its device."""
        del cache, repeat_final_dataset
        return _TrainQueue(self, self.load_arrays(data_dir, split), global_batch_size,
                           random_utils.to_int(data_rng), num_batches)

    def _to_device(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        non_blocking = self._device.type == "cuda"
        return {k: v.to(self._device, non_blocking=non_blocking) for k, v in batch.items()}

    # --- evaluation --------------------------------------------------------------------------
    def eval_metric_sums(self, logits: torch.Tensor, targets: torch.Tensor,
                         weights: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Per-batch sums that add up over batches and processes (default: accuracy, loss)."""
        loss = self.loss_fn(targets, logits, weights)["summed"]
        correct = ((logits.argmax(dim=-1) == targets).float() * weights).sum()
        return {"loss": loss, "accuracy": correct}

    def finalize_metrics(self, sums: Dict[str, float], num_examples: float) -> Dict[str, float]:
        return {k: v / num_examples for k, v in sums.items()}

    def _eval_model_on_split(self, split: str, num_examples: int, global_batch_size: int,
                             params: nn.Module, model_state, rng, data_dir: str,
                             global_step: int = 0) -> Dict[str, float]:
        del rng, global_step
        if split not in self._eval_arrays:
            self._eval_arrays[split] = self.load_arrays(data_dir, split)
        arrays = self._eval_arrays[split]
        world = pytorch_utils.world_size()
        sums: Dict[str, torch.Tensor] = {}
        seen = torch.zeros((), device=self._device)
        for batch in iterators.eval_iterator(arrays, global_batch_size):
            batch = iterators.shard_batch(batch, self._rank, world)
            weights = torch.as_tensor(batch.pop("weights"), dtype=torch.float32)
            inputs = self._to_device(self.preprocess(batch, train=False, rng=None))
            weights = weights.to(self._device)
            logits, _ = self.model_fn(params, inputs, model_state, spec.ForwardPassMode.EVAL,
                                      None, update_batch_norm=False)
            for name, value in self.eval_metric_sums(logits, inputs["targets"], weights).items():
                sums[name] = sums.get(name, 0.0) + value.detach().double()
            seen += weights.sum()
        if self._use_ddp:
            for value in list(sums.values()) + [seen]:
                dist.all_reduce(value)
        if int(seen.item()) != num_examples:
            raise RuntimeError(f"{self.name} {split}: evaluated {int(seen.item())} examples, "
                               f"expected {num_examples}")
        return self.finalize_metrics({k: float(v) for k, v in sums.items()}, num_examples)

    def eval_model(self, global_batch_size: int, params, model_state, rng, data_dir: str,
                   imagenet_v2_data_dir: Optional[str], global_step: int) -> Dict[str, float]:
        results: Dict[str, float] = {}
        for split, prefix, count in (("eval_train", "train", self.num_eval_train_examples),
                                     ("validation", "validation", self.num_validation_examples),
                                     ("test", "test", self.num_test_examples)):
            split_dir = imagenet_v2_data_dir if (split == "test" and imagenet_v2_data_dir) \
                else data_dir
            metrics = self._eval_model_on_split(split, count, global_batch_size, params,
                                                model_state, rng, split_dir, global_step)
            results.update({f"{prefix}/{k}": v for k, v in metrics.items()})
            if prefix != "train":
                results[f"{prefix}/num_examples"] = count
        return results


class TrainQueue:
    """An input queue that stops after ``num_batches`` (None: never) and can ``skip(n)``
    batches, so a resumed run sees exactly the batches the killed run would have seen next.
    Subclasses give ``skip`` and ``_next_batch``."""

    def __init__(self, num_batches: Optional[int]):
        self._remaining = num_batches

    def skip(self, count: int) -> None:
        raise NotImplementedError

    def _next_batch(self) -> Dict[str, Any]:
        raise NotImplementedError

    def __iter__(self):
        return self

    def __next__(self) -> Dict[str, Any]:
        if self._remaining is not None:
            if self._remaining <= 0:
                raise StopIteration
            self._remaining -= 1
        return self._next_batch()


class _TrainQueue(TrainQueue):
    """Reshuffled batches of in-memory arrays; ``skip`` starts the shuffle further on without
    producing the skipped batches."""

    def __init__(self, workload: PyTorchWorkload, arrays, global_batch_size: int, seed: int,
                 num_batches: Optional[int]):
        super().__init__(num_batches)
        self._workload, self._arrays = workload, arrays
        self._global_batch_size, self._seed = global_batch_size, seed
        self._world = pytorch_utils.world_size()
        self.skip(0)

    def skip(self, count: int) -> None:
        self._start = getattr(self, "_start", 0) + count
        self._batches = iterators.batch_iterator(self._arrays, self._global_batch_size,
                                                 self._seed, start_batch=self._start)
        # Augmentation randomness is a function of (seed, batch index), so skipping keeps it.
        self._index = self._start

    def _next_batch(self) -> Dict[str, torch.Tensor]:
        batch = iterators.shard_batch(next(self._batches), self._workload._rank, self._world)
        rng = np.random.default_rng((self._seed, self._index))
        self._index += 1
        return self._workload._to_device(self._workload.preprocess(batch, train=True, rng=rng))
