"""Wide ResNets (Zagoruyko & Komodakis, 2016, arXiv:1605.07146) for 32x32 images, in PyTorch.

WRN-d-k: a 3x3 stem conv to 16 channels, three groups of n = (d - 4) / 6 pre-activation basic
blocks with 16k, 32k, 64k channels (the second and third groups halve the resolution in their
first block), then norm -> activation -> global average pool -> linear.

Pre-activation basic block (the paper's "B(3,3)" with dropout between the convs)::

    h = act(norm1(x))
    y = conv3x3(h, stride) -> act(norm2(.)) -> dropout(p) -> conv3x3
    out = y + (x if shapes match else conv1x1(h, stride))

Sizes, [N, C, H, W] with N images, for WRN-16-4 on [N, 3, 32, 32]:
stem [N, 16, 32, 32] -> group 1 [N, 64, 32, 32] -> group 2 [N, 128, 16, 16]
-> group 3 [N, 256, 8, 8] -> pool [N, 256] -> logits [N, 10].

Parameter count of ``WideResNet(depth=16, widen=4)`` (BatchNorm, 10 classes): 2,748,890
(tested), the paper's "2.7M". Convs have no bias (a following norm would cancel it).
"""
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}


def make_norm(kind: str, channels: int) -> nn.Module:
    """'batch': BatchNorm2d; 'group': GroupNorm with 16 groups (or fewer when C < 16), which
    normalises each example on its own, so the model has no batch statistics at all."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(16, channels), channels)
    raise ValueError(f"unknown norm {kind!r}; use 'batch' or 'group'")


class BasicBlock(nn.Module):
    """Pre-activation block: [N, C_in, H, W] -> [N, C_out, H / stride, W / stride]."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str,
                 activation: Callable[[], nn.Module]):
        super().__init__()
        self.norm1 = make_norm(norm, in_channels)
        self.act1 = activation()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.norm2 = make_norm(norm, out_channels)
        self.act2 = activation()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor, dropout_rate: float) -> torch.Tensor:
        h = self.act1(self.norm1(x))
        # The projection sees the pre-activated input, as in the reference WRN: with an
        # identity shortcut the raw x is kept so the residual stream stays un-normalised.
        skip = x if self.shortcut is None else self.shortcut(h)
        y = self.act2(self.norm2(self.conv1(h)))
        y = F.dropout(y, p=dropout_rate, training=self.training)
        return skip + self.conv2(y)


class WideResNet(nn.Module):
    """WRN-depth-widen: [N, 3, H, W] normalised images -> [N, num_classes] logits.

    Args:
      depth: 6n + 4 (10, 16, 22, 28, ...): n blocks per group.
      widen: channel multiplier k (group widths 16k, 32k, 64k).
      activation: 'relu' (the paper's), 'silu' or 'gelu'.
      norm: 'batch' (the paper's) or 'group'.
    """

    def __init__(self, depth: int = 16, widen: int = 4, num_classes: int = 10,
                 activation: str = "relu", norm: str = "batch", in_channels: int = 3):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4 with n >= 1, got {depth}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of "
                             f"{sorted(ACTIVATIONS)}")
        blocks_per_group = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        act = ACTIVATIONS[activation]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks = []
        for group in range(3):
            for i in range(blocks_per_group):
                stride = 2 if (group > 0 and i == 0) else 1
                c_in = widths[group] if i == 0 else widths[group + 1]
                blocks.append(BasicBlock(c_in, widths[group + 1], stride, norm, act))
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = make_norm(norm, widths[3])
        self.final_act = act()
        self.head = nn.Linear(widths[3], num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal convs (fan-out, as the reference WRN), norms at identity, zero biases;
        the head keeps PyTorch's default uniform init with a zero bias."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, dropout_rate: float = 0.0) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x, dropout_rate)
        x = self.final_act(self.final_norm(x))
        return self.head(x.mean(dim=(2, 3)))
