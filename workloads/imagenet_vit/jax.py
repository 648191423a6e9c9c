"""imagenet_vit in JAX: the Flax ViT of ``flax_models``; standardisation and mixup on the
device, with the same lambda per batch as the PyTorch side (``imagenet.batch_rng``)."""
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from workloads.datasets import image_transforms
from workloads.imagenet_vit import flax_models
from workloads.jax_workload import JaxModel


class ImagenetVitJax(JaxModel):
    output_module = "head"

    def build_model(self):
        return flax_models.from_definition(self)

    def init_inputs(self):
        return np.zeros((1, self.center_crop_size, self.center_crop_size, 3), np.float32)

    def _variables_from_copy(self, state_dict):
        return flax_models.params_from_torch(state_dict, self), {}

    def on_device(self, batch: Dict[str, Any], train: bool,
                  rng: Optional[np.random.Generator]) -> Dict[str, Any]:
        """{'inputs': uint8 [b, S, S, 3], 'targets': int [b]} -> float32 standardised NHWC;
        with mixup (train) float32 [b, C] mixed one-hot targets."""
        x = (batch["inputs"].astype(jnp.float32) - jnp.asarray(self.train_mean, jnp.float32)) \
            / jnp.asarray(self.train_stddev, jnp.float32)
        labels = batch["targets"]
        if train and self.mixup_alpha:
            lam = image_transforms.mixup_lambda(self.mixup_alpha, rng)
            x = image_transforms.mix(x, lam, jnp.roll)
            labels = image_transforms.mix(jax.nn.one_hot(labels, self.num_classes), lam,
                                          jnp.roll)
        return {**batch, "inputs": x, "targets": labels}
