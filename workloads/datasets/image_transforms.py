"""Image augmentation and evaluation transforms for the ImageNet workloads (numpy + PIL only).

All randomness comes from the ``numpy.random.Generator`` passed in, so an example's
augmentation is a function of the seed it is given (the loaders derive one per example from
(seed, batch index, position in batch)); no global random state is touched.

Train (AlgoPerf's ImageNet ViT pipeline, ``imagenet_resnet/*/input_pipeline.py``):
  1. ``random_resized_crop_box``: a box covering a fraction ``scale`` = (0.08, 1) of the image
     area with aspect ratio w/h log-uniform in ``ratio`` = (3/4, 4/3), 10 attempts, else the
     central box of the largest allowed ratio; resized to 224x224 (bicubic).
  2. ``hflip`` with probability 1/2.
  3. ``rand_augment``: ``num_layers`` = 2 ops drawn uniformly from ``RANDAUG_OPS`` at
     ``magnitude`` = 10 (of a maximum level of 10). AlgoPerf's JAX pipeline calls RandAugment
     with ``randaug_num_layers=2, randaug_magnitude=10`` (its defaults; the ViT workload does
     not override them), and its PyTorch pipeline applies the same ops at their maximum
     magnitude; both agree with magnitude 10 here.
  4. ``mixup`` on the whole batch with a single lambda ~ Beta(0.2, 0.2): x <- l x + (1 - l)
     roll(x, 1), same for one-hot targets (AlgoPerf: ``mixup_alpha=0.2``).
Eval: ``center_crop_resize``: the central square of side 224/256 * min(H, W) resized to
224x224 (bicubic): the same pixels as "resize the shorter side to 256, crop the central 224",
in one resampling, as AlgoPerf's ``_decode_and_center_crop``.
"""
import math
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

Box = Tuple[int, int, int, int]  # (top, left, height, width) in pixels
FILL = (128, 128, 128)  # grey for pixels that geometric ops move in from outside
MAX_LEVEL = 10.0


# --- geometry --------------------------------------------------------------------------------
def random_resized_crop_box(rng: np.random.Generator, height: int, width: int,
                            scale: Tuple[float, float] = (0.08, 1.0),
                            ratio: Tuple[float, float] = (3 / 4, 4 / 3),
                            attempts: int = 10) -> Box:
    """A random box (top, left, h, w) inside an image of ``height`` x ``width``.

    Each attempt draws area ~ U(scale) * H * W and log(w / h) ~ U(log ratio), takes
    w = round(sqrt(area * r)), h = round(sqrt(area / r)), and accepts if 0 < h <= H, 0 < w <= W,
    with top ~ U{0..H-h}, left ~ U{0..W-w}. After ``attempts`` failures: the central box with
    the aspect ratio clamped into ``ratio`` (the whole image when it is within ``ratio``).
    Draws per attempt, in order: area fraction, log-ratio; then top, left.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        target = area * rng.uniform(scale[0], scale[1])
        r = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * r)))
        h = int(round(math.sqrt(target / r)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def center_crop_box(height: int, width: int, crop_size: int = 224,
                    resize_size: int = 256) -> Box:
    """The central square of side s = floor(crop_size / resize_size * min(H, W)), offsets
    ((H - s) + 1) // 2 and ((W - s) + 1) // 2 (AlgoPerf's ``_decode_and_center_crop``)."""
    s = int(crop_size / resize_size * min(height, width))
    return ((height - s) + 1) // 2, ((width - s) + 1) // 2, s, s


def crop_resize(image: Image.Image, box: Box, size: int,
                resample: int = Image.BICUBIC) -> Image.Image:
    """The ``box`` of ``image`` resampled to ``size`` x ``size`` (one resampling, no copy of
    the crop; an identity when the box already is ``size`` x ``size``)."""
    top, left, h, w = box
    if (h, w) == (size, size):
        return image.crop((left, top, left + w, top + h))
    return image.resize((size, size), resample, box=(left, top, left + w, top + h))


def center_crop_resize(image: Image.Image, crop_size: int = 224,
                       resize_size: int = 256) -> Image.Image:
    """Eval transform: ``crop_resize(image, center_crop_box(...), crop_size)``."""
    return crop_resize(image, center_crop_box(image.height, image.width, crop_size,
                                              resize_size), crop_size)


def hflip(image: Image.Image) -> Image.Image:
    """Mirrored left-right: pixel (x, y) becomes (W - 1 - x, y), i.e. array[:, ::-1]."""
    return image.transpose(Image.FLIP_LEFT_RIGHT)


# --- RandAugment ----------------------------------------------------------------------------
def _level(magnitude: float, maximum: float) -> float:
    return magnitude / MAX_LEVEL * maximum


def _signed(value: float, rng: np.random.Generator) -> float:
    return -value if rng.random() < 0.5 else value


def _affine(image: Image.Image, coeffs) -> Image.Image:
    # PIL maps each output pixel (x, y) to the input pixel (a x + b y + c, d x + e y + f).
    return image.transform(image.size, Image.AFFINE, coeffs, Image.NEAREST, fillcolor=FILL)


def _cutout(image: Image.Image, half: int, rng: np.random.Generator) -> Image.Image:
    """A grey square of side 2 * half centred at a uniform random pixel, clipped to the image."""
    a = np.array(image)
    cy, cx = int(rng.integers(0, a.shape[0])), int(rng.integers(0, a.shape[1]))
    a[max(0, cy - half):cy + half, max(0, cx - half):cx + half] = FILL
    return Image.fromarray(a)


def _solarize_add(image: Image.Image, addition: int) -> Image.Image:
    """Add ``addition`` (clipped to [0, 255]) to the pixels below 128; others unchanged."""
    a = np.asarray(image)
    added = np.clip(a.astype(np.int16) + addition, 0, 255).astype(np.uint8)
    return Image.fromarray(np.where(a < 128, added, a))


def _enhance(kind) -> Callable:
    # Factor 0.1 .. 1.9: 1.0 is the identity, <1 less, >1 more (TF/big_vision's mapping).
    return lambda img, m, rng: kind(img).enhance(_level(m, 1.8) + 0.1)


# name -> fn(PIL image, magnitude in [0, 10], rng) -> PIL image. Arguments as in the TF
# RandAugment that AlgoPerf's JAX pipeline uses (translate_const 100, cutout_const 40).
RANDAUG_OPS: Dict[str, Callable] = {
    "AutoContrast": lambda img, m, rng: ImageOps.autocontrast(img),
    "Equalize": lambda img, m, rng: ImageOps.equalize(img),
    "Invert": lambda img, m, rng: ImageOps.invert(img),
    "Rotate": lambda img, m, rng: img.rotate(_signed(_level(m, 30.0), rng), Image.NEAREST,
                                             fillcolor=FILL),
    "Posterize": lambda img, m, rng: ImageOps.posterize(img, int(_level(m, 4.0))),
    "Solarize": lambda img, m, rng: ImageOps.solarize(img, int(_level(m, 256.0))),
    "SolarizeAdd": lambda img, m, rng: _solarize_add(img, int(_level(m, 110.0))),
    "Color": _enhance(ImageEnhance.Color),
    "Contrast": _enhance(ImageEnhance.Contrast),
    "Brightness": _enhance(ImageEnhance.Brightness),
    "Sharpness": _enhance(ImageEnhance.Sharpness),
    "ShearX": lambda img, m, rng: _affine(img, (1, _signed(_level(m, 0.3), rng), 0, 0, 1, 0)),
    "ShearY": lambda img, m, rng: _affine(img, (1, 0, 0, _signed(_level(m, 0.3), rng), 1, 0)),
    "TranslateX": lambda img, m, rng: _affine(
        img, (1, 0, _signed(_level(m, 100.0), rng), 0, 1, 0)),
    "TranslateY": lambda img, m, rng: _affine(
        img, (1, 0, 0, 0, 1, _signed(_level(m, 100.0), rng))),
    "Cutout": lambda img, m, rng: _cutout(img, int(_level(m, 40.0)), rng),
}
_OP_NAMES = tuple(RANDAUG_OPS)


def rand_augment(image: Image.Image, rng: np.random.Generator, num_layers: int = 2,
                 magnitude: float = 10.0,
                 ops: Optional[Sequence[str]] = None) -> Image.Image:
    """RandAugment (Cubuk et al. 2020): ``num_layers`` ops, each uniform over ``ops``
    (default all of ``RANDAUG_OPS``), applied in sequence at ``magnitude``. Draws: the op
    indices [num_layers] first, then whatever each op draws (sign, cutout centre)."""
    names = _OP_NAMES if ops is None else tuple(ops)
    for i in rng.integers(0, len(names), size=num_layers):
        image = RANDAUG_OPS[names[i]](image, magnitude, rng)
    return image


# --- batches ----------------------------------------------------------------------------------
def mixup_lambda(alpha: float, rng: np.random.Generator) -> float:
    """The batch's mixing weight l ~ Beta(alpha, alpha)."""
    return float(rng.beta(alpha, alpha))


def mix(x, lam: float, roll=np.roll):
    """Batch mixup's blend (Zhang et al. 2018), partner = the previous row:
    x_i <- l x_i + (1 - l) x_{i-1}. ``roll`` is the array library's (numpy's by default;
    ``torch.roll`` or ``jnp.roll`` where the batch already is on the device)."""
    return lam * x + (1 - lam) * roll(x, 1, 0)


def mixup(images: np.ndarray, labels: np.ndarray, num_classes: int, lam: float):
    """images float [N, ...], labels int64 [N] -> (mixed images, float32 [N, num_classes]
    mixed one-hots: y_i <- l onehot(y_i) + (1 - l) onehot(y_{i-1}))."""
    onehot = np.eye(num_classes, dtype=np.float32)[labels]
    return mix(images, lam), mix(onehot, lam)
