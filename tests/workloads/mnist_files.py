"""Small MNIST files in the classic IDX format, written by tests (no download here)."""
import numpy as np

from workloads.datasets import idx, mnist


def write_mnist_idx(folder, n_train=60, n_test=10, compress=False, dotted=False, seed=0):
    """Tiny MNIST in the four classic IDX files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, n_train).astype(np.uint8),
              "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, n_test).astype(np.uint8)}
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in mnist.IDX_FILES.items():
        name = stem.replace("-idx", ".idx") if dotted else stem
        idx.write_idx(folder / (name + (".gz" if compress else "")), arrays[key], compress)
    return arrays
