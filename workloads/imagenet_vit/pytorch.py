"""imagenet_vit in PyTorch: ``models.ViT``; standardisation and mixup on the device."""
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workloads.datasets import image_transforms
from workloads.imagenet_vit.models import ViT
from workloads.pytorch_workload import PyTorchModel


class ImagenetVitPyTorch(PyTorchModel):
    output_param_names = ("head.weight", "head.bias")

    def build_model(self) -> nn.Module:
        return ViT(image_size=self.center_crop_size, patch=self.patch, width=self.width,
                   depth=self.depth, mlp_dim=self.mlp_dim, num_heads=self.num_heads,
                   num_classes=self.num_classes, glu=self.use_glu,
                   post_ln=self.use_post_layer_norm, map_head=self.use_map)

    def forward(self, model: nn.Module, inputs: torch.Tensor, dropout_rate: float):
        return model(inputs, dropout_rate)

    def on_device(self, batch: Dict[str, Any], train: bool,
                  rng: Optional[np.random.Generator]) -> Dict[str, Any]:
        """{'inputs': uint8 [b, S, S, 3], 'targets': int64 [b]} -> float32 [b, 3, S, S]
        standardised; with mixup (train) the targets become float32 [b, C] mixed one-hots."""
        x = batch["inputs"].permute(0, 3, 1, 2).float()
        mean = torch.tensor(self.train_mean, dtype=torch.float32, device=x.device)
        std = torch.tensor(self.train_stddev, dtype=torch.float32, device=x.device)
        x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
        labels = batch["targets"]
        if train and self.mixup_alpha:
            lam = image_transforms.mixup_lambda(self.mixup_alpha, rng)
            x = image_transforms.mix(x, lam, torch.roll)
            labels = image_transforms.mix(F.one_hot(labels, self.num_classes).float(), lam,
                                          torch.roll)
        return {**batch, "inputs": x.contiguous(), "targets": labels}
