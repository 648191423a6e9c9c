"""cifar_wrn in JAX: the Flax WideResNet of ``flax_models`` on NHWC batches."""
import numpy as np

from workloads.cifar_wrn.flax_models import WideResNet, params_from_torch
from workloads.datasets import cifar10
from workloads.jax_workload import JaxModel


class CifarWrnJax(JaxModel):
    output_module = "head"

    def build_model(self):
        return WideResNet(depth=self.depth, widen=self.widen, num_classes=cifar10.NUM_CLASSES,
                          activation=self.activation, norm=self.norm)

    def init_inputs(self):
        return np.zeros((1,) + cifar10.IMAGE_SHAPE, np.float32)

    def _variables_from_copy(self, state_dict):
        params, batch_stats = params_from_torch(state_dict)
        return params, ({"batch_stats": batch_stats} if batch_stats else {})
