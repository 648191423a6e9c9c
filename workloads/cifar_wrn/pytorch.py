"""cifar_wrn in PyTorch: the WideResNet of ``models`` on CIFAR-10 (or generated cifar10_tiny)."""
from typing import Dict

import numpy as np
import torch
from torch import nn

from workloads.cifar_wrn import definition
from workloads.cifar_wrn.models import WideResNet
from workloads.datasets import cifar10
from workloads.pytorch_workload import PyTorchWorkload


class CifarWrnWorkload(PyTorchWorkload, definition.CifarWrnDefinition):
    output_param_names = ("head.weight", "head.bias")

    def build_model(self) -> nn.Module:
        return WideResNet(depth=self.depth, widen=self.widen, num_classes=cifar10.NUM_CLASSES,
                          activation=self.activation, norm=self.norm)

    def forward(self, model: nn.Module, inputs: torch.Tensor, dropout_rate: float):
        return model(inputs, dropout_rate)

    def load_arrays(self, data_dir: str, split: str) -> Dict[str, np.ndarray]:
        arrays = self._read(data_dir, "train" if split == "eval_train" else split)
        if split == "eval_train":  # the first train images, evaluated without augmentation
            arrays = {k: v[:self.num_eval_train_examples] for k, v in arrays.items()}
        return arrays

    def _read(self, data_dir: str, split: str) -> Dict[str, np.ndarray]:
        return cifar10.load_cifar10(data_dir, split)

    def preprocess(self, arrays, train, rng) -> Dict[str, torch.Tensor]:
        """{'images': uint8 [N, 32, 32, 3], 'labels': int64 [N]} ->
        {'inputs': float32 [N, 3, 32, 32], 'targets': int64 [N]} (crop + flip when train)."""
        images = cifar10.preprocess_batch(arrays["images"], train, rng)
        return {"inputs": torch.from_numpy(images),
                "targets": torch.from_numpy(np.asarray(arrays["labels"], dtype=np.int64))}


class CifarWrnSiluWorkload(CifarWrnWorkload, definition.CifarWrnSiluDefinition):
    pass


class CifarWrnGroupNormWorkload(CifarWrnWorkload, definition.CifarWrnGroupNormDefinition):
    pass


class CifarWrnTinyWorkload(CifarWrnWorkload, definition.CifarWrnTinyDefinition):
    def _read(self, data_dir: str, split: str) -> Dict[str, np.ndarray]:
        return cifar10.load_cifar10_tiny(data_dir, split)
