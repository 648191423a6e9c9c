"""imagenet_vit's data side (numpy): JPEG shards decoded and augmented by loader workers.

Data flow of a train step: loader workers decode + augment their chunks of the batch
(uint8 [b, S, S, 3], b = this process's slice of the global batch) -> the framework moves the
uint8 batch to the device and standardises (and mixes up, with the batch's lambda drawn from
``imagenet.batch_rng(seed, batch)``) there, where it is cheap.

Loader workers: ``ALGOPERF_LOADER_WORKERS`` if set, else on an accelerator the process's share
of the CPU cores (``os.cpu_count() // local world size``, at most 32), else
``cpu_loader_workers`` (0 for full size: the training step needs the cores; 1 for the tiny
tier, so that decoding the next batch overlaps the current step on a second core).

Eval: every example once, in order, padded batches with weights (the loader's eval mode);
with ``cache_eval`` (tiny tier) the decoded eval batches are kept in memory after the first
eval, since they never change. With ``cache_decoded_train`` (tiny tier) each loader worker
keeps the train images it decoded, so only the first epoch decodes (the augmentation after
decoding is drawn afresh for every batch).
"""
import os
from typing import Dict, Iterator

import numpy as np

from algoperf import eval_guard
from workloads.data_layer import DataLayer
from workloads.datasets import imagenet

# A fixed subset of train is the eval_train split: the same images in every run.
EVAL_TRAIN_SEED = 0


def loader_workers(on_accelerator: bool, cpu_default: int = 0) -> int:
    env = os.environ.get("ALGOPERF_LOADER_WORKERS")
    if env is not None:
        try:
            return max(0, int(env))
        except ValueError:
            raise ValueError(f"ALGOPERF_LOADER_WORKERS={env!r} is not an integer")
    if not on_accelerator:
        return cpu_default
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(32, (os.cpu_count() or 1) // local))


class ImageSource:
    """This process's train batches, ``{'inputs': uint8 [b, S, S, 3], 'targets': int64 [b]}``,
    with the generator of batch b's on-device draws (mixup's lambda): a function of (seed, b),
    so a resumed run (``skip``) gets the same batches as an uninterrupted one."""

    def __init__(self, loader: imagenet.ImageLoader, seed: int):
        self._loader, self._seed = loader, seed

    def skip(self, count: int) -> None:
        self._loader.skip(count)

    def next(self):
        batch = next(self._loader)
        return ({"inputs": batch["images"], "targets": batch["labels"]},
                imagenet.batch_rng(self._seed, batch["batch"]))


class ImagenetVitData(DataLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._eval_splits: Dict[str, imagenet.JpegSplit] = eval_guard.HeldOutCache()
        self._eval_cache: Dict[tuple, list] = eval_guard.HeldOutCache()

    def _split(self, data_dir: str, split: str) -> imagenet.JpegSplit:
        """'train', 'eval_train' (fixed subset of train), 'validation', 'test' (ImageNet-v2;
        the tiny tier's generated test split)."""
        tiny = self.dataset == imagenet.TINY_NAME
        if split == "test" and not tiny:
            return imagenet.load_jpeg_split(data_dir, imagenet.V2_NAME, "test",
                                            self.num_test_examples)
        source = "train" if split == "eval_train" else split
        if tiny:
            data = imagenet.load_imagenet_tiny(data_dir, source)
        else:
            expected = (self.num_train_examples if source == "train"
                        else self.num_validation_examples)
            data = imagenet.load_jpeg_split(data_dir, imagenet.NAME, source, expected)
        if split == "eval_train":
            order = np.random.default_rng(EVAL_TRAIN_SEED).permutation(len(data))
            data = data.subset(np.sort(order[:self.num_eval_train_examples]))
        return data

    def load_arrays(self, data_dir: str, split: str):
        """The split as a ``JpegSplit`` (checks it is readable; used by ``check_data``)."""
        return self._split(data_dir, split)

    def _augment(self) -> imagenet.AugmentConfig:
        return imagenet.AugmentConfig(self.scale_ratio_range, self.aspect_ratio_range,
                                      self.flip, self.randaug_layers, self.randaug_magnitude,
                                      self.mixup_alpha)

    def _part(self, global_batch_size: int):
        rank, world = self._backend.rank, self._backend.world_size
        if global_batch_size % world:
            raise ValueError(f"global batch size {global_batch_size} is not divisible by "
                             f"the {world} processes")
        per = global_batch_size // world
        return rank * per, (rank + 1) * per

    def _workers(self) -> int:
        return loader_workers(self._backend.has_accelerator, self.cpu_loader_workers)

    def train_source(self, split: imagenet.JpegSplit, global_batch_size: int, seed: int):
        loader = imagenet.ImageLoader(
            split, global_batch_size, self.center_crop_size, seed, train=True,
            aug=self._augment(), part=self._part(global_batch_size),
            num_workers=self._workers(), cache_decoded=self.cache_decoded_train)
        return ImageSource(loader, seed)

    def _eval_batches(self, split: str, data_dir: str, global_batch_size: int,
                      num_examples: int) -> Iterator[Dict[str, np.ndarray]]:
        if split not in self._eval_splits:
            self._eval_splits[split] = self._split(data_dir, split)
        key = (split, global_batch_size)
        loader = self._eval_cache.get(key) or imagenet.ImageLoader(
            self._eval_splits[split], global_batch_size, self.center_crop_size, train=False,
            resize_size=self.resize_size, part=self._part(global_batch_size),
            num_workers=self._workers())
        if self.cache_eval and key not in self._eval_cache:
            loader = self._eval_cache[key] = list(loader)
        for batch in loader:
            yield {"inputs": batch["images"], "targets": batch["labels"],
                   "weights": batch["weights"]}
