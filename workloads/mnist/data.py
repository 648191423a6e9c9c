"""MNIST's data side (numpy): the prepared MNIST splits or the generated ``mnist_tiny``."""
from typing import Dict

import numpy as np

from workloads.data_layer import DataLayer
from workloads.datasets import mnist as mnist_data


class MnistData(DataLayer):
    def load_arrays(self, data_dir: str, split: str) -> Dict[str, np.ndarray]:
        """{'images': uint8 [N, 28, 28], 'labels': int64 [N]}; 'eval_train' is the first
        ``num_eval_train_examples`` training images (unaugmented: MNIST has no augmentation)."""
        if self.dataset == mnist_data.TINY_NAME:
            return self.read_split(lambda s: mnist_data.load_mnist_tiny(data_dir, s), split)
        return self.read_split(
            lambda s: mnist_data.load_mnist(data_dir, s, check_sizes=self.check_sizes), split)

    def preprocess(self, arrays, train, rng) -> Dict[str, np.ndarray]:
        """-> {'inputs': float32 [N, 28, 28], (x / 255 - mean) / std; 'targets': int64 [N]}."""
        del train, rng
        images = np.asarray(arrays["images"], dtype=np.float32)
        images = (images / 255.0 - self.train_mean) / self.train_stddev
        return {"inputs": images, "targets": np.asarray(arrays["labels"])}
