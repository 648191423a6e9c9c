"""MNIST in PyTorch: a 784-128-10 MLP with a sigmoid hidden layer (AlgoPerf's model)."""
import torch
from torch import nn

from workloads.pytorch_workload import PyTorchModel


class MLP(nn.Module):
    """[N, 28, 28] normalised images -> [N, 10] logits."""

    def __init__(self, hidden: int = 128, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.Sigmoid(),
                                 nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MnistPyTorch(PyTorchModel):
    output_param_names = ("net.3.weight", "net.3.bias")

    def build_model(self) -> nn.Module:
        return MLP()
