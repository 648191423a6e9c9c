"""cifar_wrn in PyTorch: the WideResNet of ``models`` (channels-first convolutions)."""
from typing import Any, Dict, Optional

import numpy as np
import torch
from torch import nn

from workloads.cifar_wrn.models import WideResNet
from workloads.datasets import cifar10
from workloads.pytorch_workload import PyTorchModel, channels_first


class CifarWrnPyTorch(PyTorchModel):
    output_param_names = ("head.weight", "head.bias")

    def build_model(self) -> nn.Module:
        return WideResNet(depth=self.depth, widen=self.widen, num_classes=cifar10.NUM_CLASSES,
                          activation=self.activation, norm=self.norm)

    def forward(self, model: nn.Module, inputs: torch.Tensor, dropout_rate: float):
        return model(inputs, dropout_rate)

    def on_device(self, batch: Dict[str, Any], train: bool,
                  rng: Optional[np.random.Generator]) -> Dict[str, Any]:
        return {**batch, "inputs": channels_first(batch["inputs"])}
