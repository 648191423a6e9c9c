"""MNIST in JAX: the Flax MLP of ``flax_models`` (AlgoPerf's Dense_0 / Dense_1)."""
import numpy as np

from workloads.jax_workload import JaxModel
from workloads.mnist.flax_models import MLP, params_from_torch


class MnistJax(JaxModel):
    output_module = "Dense_1"

    def build_model(self):
        return MLP()

    def init_inputs(self):
        return np.zeros((1, 28, 28), np.float32)

    def _variables_from_copy(self, state_dict):
        params, _ = params_from_torch(state_dict)
        return params, {}
