"""cifar_wrn's data side (numpy): prepared CIFAR-10 or generated cifar10_tiny, crop + flip."""
from typing import Dict

import numpy as np

from workloads.data_layer import DataLayer
from workloads.datasets import cifar10


class CifarWrnData(DataLayer):
    def load_arrays(self, data_dir: str, split: str) -> Dict[str, np.ndarray]:
        """{'images': uint8 [N, 32, 32, 3], 'labels': int64 [N]}; 'eval_train' is the first
        ``num_eval_train_examples`` train images, evaluated without augmentation."""
        if self.dataset == cifar10.TINY_NAME:
            return self.read_split(lambda s: cifar10.load_cifar10_tiny(data_dir, s), split)
        return self.read_split(
            lambda s: cifar10.load_cifar10(data_dir, s, check_sizes=self.check_sizes), split)

    def preprocess(self, arrays, train, rng) -> Dict[str, np.ndarray]:
        """-> {'inputs': float32 [N, 32, 32, 3] standardised (crop + flip when train),
        'targets': int64 [N]}."""
        return {"inputs": cifar10.preprocess_batch(arrays["images"], train, rng),
                "targets": np.asarray(arrays["labels"], dtype=np.int64)}
