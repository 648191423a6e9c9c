"""CIFAR-10 for the cifar_wrn workloads, and ``cifar10_tiny``: CIFAR-shaped data generated here.

Both are stored in the prepared form (``workloads.datasets.prepared``), same layout::

    <data_dir>/cifar10/{train,validation,test}/images.npy   uint8 [N, 32, 32, 3]  (HWC, RGB)
    <data_dir>/cifar10/{train,validation,test}/labels.npy   int64 [N]             (0..9)

Splits: the 50,000 official training images become 45,000 ``train`` (TFDS ``train[:45000]``)
and 5,000 ``validation`` (TFDS ``train[45000:]``), both in TFDS's stored order, which is fixed
by the TFDS dataset version and recorded in ``meta.json``; the 10,000 official test images are
``test``. (AlgoPerf's development cifar workload holds out the same last 10% of TFDS train.)

Input pipeline (``preprocess_batch``), no torchvision:
* train: pad each image with 4 zero (black) pixels on every side, take a random 32x32 window
  of the 40x40 result, flip it horizontally with probability 1/2 (``random_crop_flip``);
  all draws come from the numpy Generator the workload passes, so they repeat per seed.
* every split: per-channel standardisation with the CIFAR-10 train statistics
  ``(x / 255 - CIFAR10_MEAN) / CIFAR10_STD``; images stay NHWC (a framework that wants
  channels first transposes on its side).

cifar10_tiny
------------
``generate_cifar10_tiny`` draws ten class prototypes from a seed: smooth colour patterns, each
a sum of a few random low-frequency 2-D cosines per channel. An example takes its class's
prototype, flips it horizontally with probability 1/2 (so flip augmentation keeps labels
right), shifts it circularly by up to 4 pixels, scales its contrast, and adds a fresh
random smooth "background" pattern from the same family (so no single pixel or mean colour
gives the class away), a per-channel brightness offset and pixel noise; then it is quantised
to uint8. Sizes ``TINY_SIZES``. Same seed, same bytes. Generation takes about 3 s.

Learnability (seed 0): WRN-10-1 with NAdamW reaches 0.94 validation accuracy in 114-154 steps
of batch 128 and ~0.965 by step 250 (``workloads/cifar_wrn/tiny_targets.json``); a linear
classifier on the normalised pixels (Adam, full batch) plateaus at ~0.86 while fitting the
training set: the class is in the shape of the pattern, wherever it sits, not in any pixel.
"""
from pathlib import Path
from typing import Dict, Mapping, Optional

import numpy as np

from workloads.datasets.tfds_source import image_splits_from_tfds
from workloads.datasets.prepared import (DatasetError, PathLike, ensure_generated,
                                         generated_name, read_image_classification,
                                         write_prepared)

NAME = "cifar10"
TINY_NAME = "cifar10_tiny"
SPLITS = ("train", "validation", "test")
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
# Per-channel mean and standard deviation of the 50,000 CIFAR-10 training images on the
# [0, 1] scale (RGB). (The often-copied std (0.2023, 0.1994, 0.2010) is a different statistic.)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
NUM_TRAIN_EXAMPLES = 45_000
NUM_VALIDATION_EXAMPLES = 5_000
NUM_TEST_EXAMPLES = 10_000
SIZES = {"train": NUM_TRAIN_EXAMPLES, "validation": NUM_VALIDATION_EXAMPLES,
         "test": NUM_TEST_EXAMPLES}
PAD = 4  # random-crop padding, pixels per side


# ----------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------

def load_cifar10(data_dir: PathLike, split: str, check_sizes: bool = True) -> Dict[str, np.ndarray]:
    """One split of prepared CIFAR-10, memory-mapped.

    Args:
      data_dir: the data root holding ``cifar10/`` (or the ``cifar10`` folder itself).
      split: ``"train"``, ``"validation"`` or ``"test"``.
      check_sizes: require 45,000 / 5,000 / 10,000 examples; off only for tests.

    Returns:
      ``{"images": uint8 [N, 32, 32, 3], "labels": int64 [N]}`` (read-only memory maps).
    """
    return _load(data_dir, NAME, split, SIZES.get(split) if check_sizes else None, None)


def _load(data_dir: PathLike, name: str, split: str, expected: Optional[int],
          hint: Optional[str]) -> Dict[str, np.ndarray]:
    return read_image_classification(data_dir, name, split, IMAGE_SHAPE, SPLITS, expected,
                                     hint)


# ----------------------------------------------------------------------------------------
# Input pipeline
# ----------------------------------------------------------------------------------------

def random_crop_flip(images: np.ndarray, rng: np.random.Generator,
                     pad: int = PAD) -> np.ndarray:
    """Random ``pad``-padded crop and horizontal flip: uint8 [N, H, W, C] -> same shape.

    Image n becomes ``padded[n, dy:dy+H, dx:dx+W]`` (zero padding), then reversed along W
    when its flip bit is set. Draws, in this order: dy [N], dx [N] in 0..2*pad, flip [N].
    """
    n, h, w, _ = images.shape
    dy = rng.integers(0, 2 * pad + 1, size=n)
    dx = rng.integers(0, 2 * pad + 1, size=n)
    flip = rng.random(n) < 0.5
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    rows = dy[:, None] + np.arange(h)                                   # [N, H]
    cols = dx[:, None] + np.arange(w)                                   # [N, W]
    cols = np.where(flip[:, None], cols[:, ::-1], cols)                 # flip = read W backwards
    # One gather for the whole batch: out[n, i, j] = padded[n, rows[n, i], cols[n, j]].
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


_MEAN_255 = np.asarray(CIFAR10_MEAN, dtype=np.float32) * 255
_INV_STD_255 = 1.0 / (np.asarray(CIFAR10_STD, dtype=np.float32) * 255)


def normalize_images(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float32 [N, H, W, 3], ``(x / 255 - mean) / std`` per channel."""
    return (np.asarray(images, dtype=np.float32) - _MEAN_255) * _INV_STD_255


def preprocess_batch(images: np.ndarray, train: bool,
                     rng: Optional[np.random.Generator]) -> np.ndarray:
    """The model's input: augmented (train only) and normalised, float32 [N, 32, 32, 3]."""
    if train:
        images = random_crop_flip(images, rng)
    return normalize_images(images)


# ----------------------------------------------------------------------------------------
# Preparing real CIFAR-10
# ----------------------------------------------------------------------------------------

def prepare_cifar10(out_dir: PathLike, tfds_data_dir: Optional[PathLike] = None,
                    overwrite: bool = False) -> Path:
    """Write prepared CIFAR-10 to ``<out_dir>/cifar10`` from tensorflow-datasets' ``cifar10``.

    Args:
      out_dir: the data root (``--data_dir``).
      tfds_data_dir: where TFDS keeps (or downloads) its copy; TFDS's default when None.
      overwrite: replace an existing ``<out_dir>/cifar10``.
    """
    try:
        import tensorflow_datasets as tfds  # optional: only needed to prepare
    except ImportError as e:
        raise DatasetError("preparing CIFAR-10 needs tensorflow-datasets "
                           f"(pip install 'algoperf[data]') ({e})")
    splits, extra = image_splits_from_tfds(tfds, "cifar10", NUM_TRAIN_EXAMPLES, IMAGE_SHAPE,
                                           tfds_data_dir, expected_sizes=SIZES)
    return write_prepared(out_dir, NAME, splits, extra_meta=extra, overwrite=overwrite)


# ----------------------------------------------------------------------------------------
# cifar10_tiny: generated CIFAR-shaped images
# ----------------------------------------------------------------------------------------

TINY_SIZES = {"train": 5_000, "validation": 1_000, "test": 1_000}
# Bump when the generator's output changes: cached copies are then regenerated.
TINY_GENERATOR_VERSION = 1
_NUM_WAVES = 4             # cosines per channel in a smooth pattern
_MAX_CYCLES = 3            # highest spatial frequency, cycles per image
_MAX_SHIFT = 4             # circular shift of the prototype, pixels
_CONTRAST = (0.6, 1.4)     # prototype scale
_BACKGROUND = 0.6          # weight of the per-example random pattern
_BRIGHTNESS = 0.3          # per-channel offset sd
_NOISE = 0.35              # pixel noise sd (pattern units)
_TO_UINT8 = 40.0           # pattern units -> grey levels around 128


def _smooth_patterns(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random smooth colour patterns: float32 [n, 32, 32, 3], about unit variance."""
    h, w, c = IMAGE_SHAPE
    fy = rng.integers(-_MAX_CYCLES, _MAX_CYCLES + 1, size=(n, 1, c, _NUM_WAVES))
    fx = rng.integers(0, _MAX_CYCLES + 1, size=(n, 1, c, _NUM_WAVES))
    fx[(fx == 0) & (fy == 0)] = 1  # no constant "waves": mean colour is not the signal
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, c, _NUM_WAVES))
    amp = rng.normal(size=(n, 1, c, _NUM_WAVES))
    # cos(u + v) = cos u cos v - sin u sin v with u along y and v along x: two small
    # [n, H, c, K] x [n, W, c, K] products instead of a cosine at every pixel.
    u = 2 * np.pi * fy * (np.arange(h) / h)[None, :, None, None] + phase   # [n, H, c, K]
    v = 2 * np.pi * fx * (np.arange(w) / w)[None, :, None, None]           # [n, W, c, K]
    left = np.concatenate([amp * np.cos(u), -amp * np.sin(u)], -1).transpose(0, 2, 1, 3)
    right = np.concatenate([np.cos(v), np.sin(v)], -1).transpose(0, 2, 3, 1)
    pattern = (left @ right).transpose(0, 2, 3, 1)                         # [n, H, W, c]
    return (pattern * np.sqrt(2.0 / _NUM_WAVES)).astype(np.float32)


def generate_cifar10_tiny(seed: int = 0, sizes: Optional[Mapping[str, int]] = None
                          ) -> Dict[str, Dict[str, np.ndarray]]:
    """``{split: {"images": uint8 [N, 32, 32, 3], "labels": int64 [N]}}``, deterministic in seed.

    Classes are balanced and shuffled. Prototypes come from one child of ``SeedSequence(seed)``
    shared by all splits; each split's examples from its own child.
    """
    sizes = dict(TINY_SIZES, **(sizes or {}))
    proto_seed, *split_seeds = np.random.SeedSequence(int(seed)).spawn(1 + len(SPLITS))
    prototypes = _smooth_patterns(np.random.default_rng(proto_seed), NUM_CLASSES)
    out = {}
    for split, split_seed in zip(SPLITS, split_seeds):
        n = int(sizes[split])
        if n < 0:
            raise ValueError(f"{split} size must be >= 0, got {n}")
        rng = np.random.default_rng(split_seed)
        labels = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.int64)
        x = prototypes[labels]
        flip = rng.random(n) < 0.5
        x[flip] = x[flip, :, ::-1]
        shifts = rng.integers(-_MAX_SHIFT, _MAX_SHIFT + 1, size=(n, 2))
        # Circular shift (the class pattern may sit anywhere), as one gather.
        rows = (np.arange(IMAGE_SHAPE[0])[None, :] - shifts[:, :1]) % IMAGE_SHAPE[0]
        cols = (np.arange(IMAGE_SHAPE[1])[None, :] - shifts[:, 1:]) % IMAGE_SHAPE[1]
        x = x[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
        x *= rng.uniform(*_CONTRAST, size=(n, 1, 1, 1)).astype(np.float32)
        x += _BACKGROUND * _smooth_patterns(rng, n)
        x += rng.normal(0, _BRIGHTNESS, size=(n, 1, 1, 3)).astype(np.float32)
        x += rng.normal(0, _NOISE, size=x.shape).astype(np.float32)
        images = np.clip(np.rint(128 + _TO_UINT8 * x), 0, 255).astype(np.uint8)
        out[split] = {"images": images, "labels": labels}
    return out


def tiny_name(seed: int = 0, sizes: Optional[Mapping[str, int]] = None) -> str:
    """Folder name of a generated copy: ``cifar10_tiny`` for the defaults, else with settings."""
    return generated_name(TINY_NAME, TINY_SIZES, seed, sizes)


def ensure_cifar10_tiny(data_dir: PathLike, seed: int = 0,
                        sizes: Optional[Mapping[str, int]] = None,
                        overwrite: bool = False) -> Path:
    """Generate cifar10_tiny into ``<data_dir>/<tiny_name(seed, sizes)>`` unless there already
    with the same generator version, seed and sizes. Safe for concurrent processes."""
    def write(name, sizes, extra, overwrite):
        return write_prepared(data_dir, name, generate_cifar10_tiny(seed, sizes),
                              extra_meta=extra, overwrite=overwrite)
    return ensure_generated(data_dir, TINY_NAME, TINY_SIZES, TINY_GENERATOR_VERSION, seed, sizes,
                            overwrite, write, "cifar10_tiny: smooth colour patterns generated "
                            "by workloads.datasets.cifar10")


def load_cifar10_tiny(data_dir: PathLike, split: str, seed: int = 0,
                      sizes: Optional[Mapping[str, int]] = None) -> Dict[str, np.ndarray]:
    """One split of cifar10_tiny, generated into ``data_dir`` first if needed."""
    sizes = dict(TINY_SIZES, **(sizes or {}))
    ensure_cifar10_tiny(data_dir, seed, sizes)
    return _load(data_dir, tiny_name(seed, sizes), split, sizes[split],
                 f"algoperf data --dataset {TINY_NAME} --data_dir {data_dir}")
