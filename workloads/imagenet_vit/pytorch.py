"""imagenet_vit in PyTorch: ``models.ViT`` fed by the JPEG-shard loader of ``datasets.imagenet``.

Data flow of a train step: loader workers decode + augment their chunks of the batch
(uint8 [b, S, S, 3], b = this process's slice of the global batch) -> the main process moves
the uint8 batch to the device -> ``preprocess`` standardises (float32 [b, 3, S, S]) and mixes
up (targets become float32 [b, C] mixed one-hots) there, where it is cheap.

Loader workers: ``ALGOPERF_LOADER_WORKERS`` if set, else on a GPU the process's share of the
CPU cores (``os.cpu_count() // local world size``, at most 32), on CPU
``cpu_loader_workers`` (0 for full size: the training step needs the cores; 1 for the tiny
tier, so that decoding the next batch overlaps the current step on a second core).

Eval: every example once, in order, padded batches with weights (the loader's eval mode);
with ``cache_eval`` (tiny tier) the decoded eval batches are kept in memory after the first
eval, since they never change.
"""
import os
from typing import Dict, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from algoperf import eval_guard, pytorch_utils, random_utils, spec
from workloads.datasets import image_transforms, imagenet
from workloads.imagenet_vit import definition
from workloads.imagenet_vit.models import ViT
from workloads.pytorch_workload import PyTorchWorkload, TrainQueue

# A fixed subset of train is the eval_train split: the same images in every run.
EVAL_TRAIN_SEED = 0


def loader_workers(device: torch.device, cpu_default: int = 0) -> int:
    env = os.environ.get("ALGOPERF_LOADER_WORKERS")
    if env is not None:
        try:
            return max(0, int(env))
        except ValueError:
            raise ValueError(f"ALGOPERF_LOADER_WORKERS={env!r} is not an integer")
    if device.type != "cuda":
        return cpu_default
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(32, (os.cpu_count() or 1) // local))


class ImagenetVitWorkload(PyTorchWorkload, definition.ImagenetVitDefinition):
    output_param_names = ("head.weight", "head.bias")
    cpu_loader_workers = 0
    cache_eval = False  # 50,000 decoded validation images are 7.5 GB

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._eval_splits: Dict[str, imagenet.JpegSplit] = eval_guard.HeldOutCache()
        self._eval_cache: Dict[tuple, list] = eval_guard.HeldOutCache()
        stats = lambda v: torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1)  # noqa: E731
        self._mean, self._std = stats(self.train_mean), stats(self.train_stddev)

    # --- model -------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        return ViT(image_size=self.center_crop_size, patch=self.patch, width=self.width,
                   depth=self.depth, mlp_dim=self.mlp_dim, num_heads=self.num_heads,
                   num_classes=self.num_classes, glu=self.use_glu,
                   post_ln=self.use_post_layer_norm, map_head=self.use_map)

    def forward(self, model: nn.Module, inputs: torch.Tensor, dropout_rate: float):
        return model(inputs, dropout_rate)

    # --- data --------------------------------------------------------------------------------
    def _split(self, data_dir: str, split: str) -> imagenet.JpegSplit:
        """'train', 'eval_train' (fixed subset of train), 'validation', 'test' (ImageNet-v2)."""
        if split == "test":
            return imagenet.load_jpeg_split(data_dir, imagenet.V2_NAME, "test",
                                            self.num_test_examples)
        source = "train" if split == "eval_train" else split
        expected = self.num_train_examples if source == "train" else self.num_validation_examples
        data = self._read(data_dir, source, expected)
        if split == "eval_train":
            order = np.random.default_rng(EVAL_TRAIN_SEED).permutation(len(data))
            data = data.subset(np.sort(order[:self.num_eval_train_examples]))
        return data

    def _read(self, data_dir: str, split: str, expected: int) -> imagenet.JpegSplit:
        return imagenet.load_jpeg_split(data_dir, imagenet.NAME, split, expected)

    def load_arrays(self, data_dir: str, split: str):
        """The split as a ``JpegSplit`` (checks it is readable; used by ``check_data``)."""
        return self._split(data_dir, split)

    def _augment(self) -> imagenet.AugmentConfig:
        return imagenet.AugmentConfig(self.scale_ratio_range, self.aspect_ratio_range,
                                      self.flip, self.randaug_layers, self.randaug_magnitude,
                                      self.mixup_alpha)

    def _part(self, global_batch_size: int):
        world = pytorch_utils.world_size()
        if global_batch_size % world:
            raise ValueError(f"global batch size {global_batch_size} is not divisible by "
                             f"the {world} processes")
        per = global_batch_size // world
        return self._rank * per, (self._rank + 1) * per

    def _build_input_queue(self, data_rng: spec.RandomState, split: str, data_dir: str,
                           global_batch_size: int, cache: Optional[bool] = None,
                           repeat_final_dataset: Optional[bool] = None,
                           num_batches: Optional[int] = None):
        del cache, repeat_final_dataset
        seed = random_utils.to_int(data_rng)
        loader = imagenet.ImageLoader(
            self._split(data_dir, split), global_batch_size, self.center_crop_size, seed,
            train=True, aug=self._augment(), part=self._part(global_batch_size),
            num_workers=loader_workers(self._device, self.cpu_loader_workers))
        return _ImageTrainQueue(self, loader, seed, num_batches)

    def preprocess(self, arrays, train: bool, rng: Optional[np.random.Generator]):
        """{'images': uint8 [b, S, S, 3], 'labels': int64 [b]} -> {'inputs': float32
        [b, 3, S, S] standardised on the device, 'targets': int64 [b], or with mixup (train)
        float32 [b, C] mixed one-hot targets}."""
        images = torch.as_tensor(arrays["images"]).to(self._device, non_blocking=True)
        labels = torch.as_tensor(arrays["labels"]).to(self._device)
        x = images.permute(0, 3, 1, 2).float()
        x = (x - self._mean.to(x.device)) / self._std.to(x.device)
        if train and self.mixup_alpha:
            lam = image_transforms.mixup_lambda(self.mixup_alpha, rng)
            x, labels = image_transforms.mixup(x, labels, self.num_classes, lam)
        return {"inputs": x.contiguous(), "targets": labels}

    # --- evaluation ----------------------------------------------------------------------------
    def _eval_model_on_split(self, split: str, num_examples: int, global_batch_size: int,
                             params: nn.Module, model_state, rng, data_dir: str,
                             global_step: int = 0) -> Dict[str, float]:
        del rng, global_step
        if split not in self._eval_splits:
            self._eval_splits[split] = self._split(data_dir, split)
        key = (split, global_batch_size)
        loader = self._eval_cache.get(key) or imagenet.ImageLoader(
            self._eval_splits[split], global_batch_size, self.center_crop_size, train=False,
            resize_size=self.resize_size, part=self._part(global_batch_size),
            num_workers=loader_workers(self._device, self.cpu_loader_workers))
        if self.cache_eval and key not in self._eval_cache:
            loader = self._eval_cache[key] = list(loader)
        sums: Dict[str, torch.Tensor] = {}
        seen = torch.zeros((), device=self._device, dtype=torch.float64)
        for batch in loader:
            inputs = self.preprocess(batch, train=False, rng=None)
            weights = torch.as_tensor(batch["weights"]).to(self._device)
            logits, _ = self.model_fn(params, inputs, model_state, spec.ForwardPassMode.EVAL,
                                      None, update_batch_norm=False)
            for name, value in self.eval_metric_sums(logits, inputs["targets"], weights).items():
                sums[name] = sums.get(name, 0.0) + value.detach().double()
            seen += weights.sum().double()
        if self._use_ddp:
            for value in list(sums.values()) + [seen]:
                dist.all_reduce(value)
        if int(seen.item()) != num_examples:
            raise RuntimeError(f"{self.name} {split}: evaluated {int(seen.item())} examples, "
                               f"expected {num_examples}")
        return self.finalize_metrics({k: float(v) for k, v in sums.items()}, num_examples)


class _ImageTrainQueue(TrainQueue):
    """Train batches on the device; mixup's lambda of batch b comes from (seed, b), so a
    resumed run (``skip``) gets the same batches as an uninterrupted one."""

    def __init__(self, workload: ImagenetVitWorkload, loader: imagenet.ImageLoader, seed: int,
                 num_batches: Optional[int]):
        super().__init__(num_batches)
        self._workload, self._loader, self._seed = workload, loader, seed

    def skip(self, count: int) -> None:
        self._loader.skip(count)

    def _next_batch(self) -> Dict[str, torch.Tensor]:
        batch = next(self._loader)
        rng = imagenet.batch_rng(self._seed, batch["batch"])
        return self._workload.preprocess(batch, train=True, rng=rng)


class ImagenetVitGluWorkload(ImagenetVitWorkload, definition.ImagenetVitGluDefinition):
    pass


class ImagenetVitPostLnWorkload(ImagenetVitWorkload, definition.ImagenetVitPostLnDefinition):
    pass


class ImagenetVitMapWorkload(ImagenetVitWorkload, definition.ImagenetVitMapDefinition):
    pass


class ImagenetVitTinyWorkload(ImagenetVitWorkload, definition.ImagenetVitTinyDefinition):
    cpu_loader_workers = 1
    cache_eval = True  # 3 x 2,048 images of 32x32x3: 18 MB

    def _read(self, data_dir: str, split: str, expected: int) -> imagenet.JpegSplit:
        return imagenet.load_imagenet_tiny(data_dir, split)

    def _split(self, data_dir: str, split: str) -> imagenet.JpegSplit:
        if split == "test":  # generated test split of the same family (no ImageNet-v2 here)
            return self._read(data_dir, "test", self.num_test_examples)
        return super()._split(data_dir, split)
