"""The PyTorch side of a workload: its model, its loss, its parameter types, its device.

A family's mixin (``workloads/<family>/pytorch.py``) adds ``build_model()`` and, where the
model takes more than ``model(inputs)``, ``forward`` and ``to_model_inputs``. Everything else a
workload does (batches, eval loop, metrics) is ``workloads.data_layer`` on numpy arrays; this
mixin is the step from a numpy batch to tensors on the device (``_model_batch``) and back
(``_eval_logits``). Process set-up comes from the backend the workload was made with
(``algoperf.backends.pytorch.PyTorchBackend``): under DDP the model is wrapped in
DistributedDataParallel, and each process gets its slice of every batch.
"""
from typing import Any, Dict, Optional

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from algoperf import pytorch_utils, random_utils, spec
from workloads import pytorch_losses


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


class PyTorchModel:
    """Mixin placed first, before the family's ``DataLayer`` and the definition."""

    framework = "pytorch"
    output_param_names: tuple = ()

    @property
    def _device(self) -> torch.device:
        return self._backend.device

    # --- hooks ---------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def forward(self, model: nn.Module, inputs: Any, dropout_rate: float) -> torch.Tensor:
        del dropout_rate  # Models with dropout override this.
        return model(inputs)

    def to_model_inputs(self, batch: Dict[str, np.ndarray]) -> Dict[str, Any]:
        """Numpy batch -> CPU tensors (shared memory, no copies); images stay NHWC here."""
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}

    def on_device(self, batch: Dict[str, Any], train: bool,
                  rng: Optional[np.random.Generator]) -> Dict[str, Any]:
        """Preprocessing that is cheap on the device (standardisation, mixup); none here."""
        del train, rng
        return batch

    # --- the seam with DataLayer ------------------------------------------------------------
    def _model_batch(self, batch: Dict[str, np.ndarray], train: bool,
                     rng: Optional[np.random.Generator]) -> Dict[str, Any]:
        non_blocking = self._device.type == "cuda"
        tensors = {k: v.to(self._device, non_blocking=non_blocking)
                   for k, v in self.to_model_inputs(batch).items()}
        return self.on_device(tensors, train, rng)

    def _eval_logits(self, params: nn.Module, model_state, batch: Dict[str, Any]) -> np.ndarray:
        logits, _ = self.model_fn(params, batch, model_state, spec.ForwardPassMode.EVAL, None,
                                  update_batch_norm=False)
        return logits.detach().float().cpu().numpy()

    # --- model -----------------------------------------------------------------------------
    def init_model_fn(self, rng: spec.RandomState) -> spec.ModelInitState:
        torch.manual_seed(random_utils.to_int(rng))
        model = self.build_model()
        self._param_shapes = {k: spec.ShapeTuple(p.shape) for k, p in model.named_parameters()}
        self._param_types = parameter_types(model)
        model.to(self._device)
        if self._backend.use_ddp:
            model = DDP(model, device_ids=[self._backend.rank]
                        if self._device.type == "cuda" else None)
        return model, None

    def is_output_params(self, param_key: spec.ParameterKey) -> bool:
        return param_key.removeprefix("module.") in self.output_param_names

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

    # --- loss ------------------------------------------------------------------------------
    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing: float = 0.0):
        return pytorch_losses.softmax_cross_entropy(label_batch, logits_batch, mask_batch,
                                                    label_smoothing)


def channels_first(images: torch.Tensor) -> torch.Tensor:
    """NHWC (the data layer's layout, AlgoPerf's JAX layout) -> NCHW for torch convolutions."""
    return images.permute(0, 3, 1, 2).contiguous()
