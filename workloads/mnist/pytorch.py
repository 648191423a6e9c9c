"""MNIST in PyTorch: a 784-128-10 MLP with a sigmoid hidden layer (AlgoPerf's model)."""
from typing import Dict

import numpy as np
import torch
from torch import nn

from workloads.datasets import mnist as mnist_data
from workloads.mnist.definition import MnistDefinition, MnistTinyDefinition
from workloads.pytorch_workload import PyTorchWorkload


class MLP(nn.Module):
    """[N, 28, 28] normalised images -> [N, 10] logits."""

    def __init__(self, hidden: int = 128, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.Sigmoid(),
                                 nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MnistWorkload(PyTorchWorkload, MnistDefinition):
    output_param_names = ("net.3.weight", "net.3.bias")

    def build_model(self) -> nn.Module:
        return MLP()

    def load_arrays(self, data_dir: str, split: str) -> Dict[str, np.ndarray]:
        arrays = self._read(data_dir, "train" if split == "eval_train" else split)
        if split == "eval_train":  # the first examples of the training set, unaugmented
            arrays = {k: v[:self.num_eval_train_examples] for k, v in arrays.items()}
        return arrays

    def _read(self, data_dir: str, split: str) -> Dict[str, np.ndarray]:
        return mnist_data.load_mnist(data_dir, split)

    def preprocess(self, arrays, train, rng) -> Dict[str, torch.Tensor]:
        del train, rng  # No augmentation on MNIST.
        images = torch.from_numpy(np.asarray(arrays["images"], dtype=np.float32))
        images = (images / 255.0 - self.train_mean) / self.train_stddev
        return {"inputs": images, "targets": torch.from_numpy(np.asarray(arrays["labels"]))}


class MnistTinyWorkload(MnistWorkload, MnistTinyDefinition):
    def _read(self, data_dir: str, split: str) -> Dict[str, np.ndarray]:
        return mnist_data.load_mnist_tiny(data_dir, split)
