"""ImageNet-2012 (and ImageNet-v2) for the imagenet_vit workloads: prepare once, read fast.

Preparing (``algoperf data --dataset imagenet --source_dir DIR --data_dir DATA``) reads the
user's own archives, as AlgoPerf requires (nothing is downloaded):

    DIR/ILSVRC2012_img_train.tar   1000 per-class tars ``n01440764.tar`` ... of JPEGs
    DIR/ILSVRC2012_img_val.tar     50,000 ``ILSVRC2012_val_00000001.JPEG`` ...
    DIR/<val labels>               one of: ``ILSVRC2012_validation_labels.txt`` or
                                   ``validation_labels.txt`` (one synset id per line, in
                                   val image order; TFDS ships this file), or Kaggle's
                                   ``LOC_val_solution.csv`` (ImageId,PredictionString)

Labels are the index of the synset id in the sorted list of the 1000 train synsets (TFDS's
and torchvision's convention). ImageNet-v2 matched-frequency (10,000 test images) is read
from tensorflow-datasets ``imagenet_v2/matched-frequency`` (``algoperf data --dataset
imagenet_v2``), its JPEG bytes kept as they are.

Prepared form (``workloads.datasets.prepared``; one folder per dataset)::

    <data>/imagenet/{train,validation}/labels.npy        int64 [N]
    <data>/imagenet/{train,validation}/ranges.npy        int64 [N, 2]  byte [start, end) of
                                                         example i inside its shard
    <data>/imagenet/{train,validation}/jpeg_00000.npy    uint8 [bytes]  the original JPEG
    ...                                                  files of examples [k*S, (k+1)*S)
    <data>/imagenet_v2/test/...                          same layout

S = ``meta.json``'s ``extra.shard_size`` (5,000: ~550 MB a shard, bought in memory while
preparing; train has 257 shards). Loader workers memory-map the shards and decode with PIL,
so reading costs one JPEG decode per example and no index scan.

Input pipeline (``decode_train`` / ``decode_eval``): PIL decode -> RGB -> the transforms of
``workloads.datasets.image_transforms`` -> uint8 [S, S, 3]. Normalisation and mixup happen on
the whole batch on the training device. ``ImageLoader`` runs these in a pool of worker
processes (``worker_pool.OrderedPool``: decoded images come back through shared memory) in
chunks of a batch; the augmentation of the example at position j of batch b depends only on
(seed, b, j), so any number of workers and a resumed run (``skip``) produce the same batches.

Also here: ``imagenet_tiny`` (generated, see ``generate_imagenet_tiny``) in the same format.
"""
import csv
import io
import re
import tarfile
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from workloads.datasets import image_transforms as T
from workloads.datasets import iterators
from workloads.datasets.worker_pool import OrderedPool
from workloads.datasets.prepared import (DatasetError, PathLike, PreparedWriter, dataset_dir,
                                         ensure_generated, generated_name, read_meta,
                                         read_prepared)

NAME = "imagenet"
V2_NAME = "imagenet_v2"
TINY_NAME = "imagenet_tiny"
NUM_CLASSES = 1000
SIZES = {"train": 1_281_167, "validation": 50_000}
V2_SIZE = 10_000
TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
VAL_LABEL_FILES = ("ILSVRC2012_validation_labels.txt", "validation_labels.txt",
                   "LOC_val_solution.csv")
SHARD_SIZE = 5_000
_SYNSET = re.compile(r"^n\d{8}$")
_VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG$")


# ----------------------------------------------------------------------------------------
# Writing the prepared form
# ----------------------------------------------------------------------------------------

class _ShardedJpegWriter:
    """Appends (jpeg bytes, label) examples of one split into shards of ``shard_size``."""

    def __init__(self, writer: PreparedWriter, split: str, shard_size: int):
        self.writer, self.split, self.shard_size = writer, split, shard_size
        self.labels: List[int] = []
        self.ranges: List[Tuple[int, int]] = []
        self._buffer: List[bytes] = []
        self._used = 0
        self._shard = 0

    def add(self, jpeg: bytes, label: int) -> None:
        self.ranges.append((self._used, self._used + len(jpeg)))
        self.labels.append(int(label))
        self._buffer.append(jpeg)
        self._used += len(jpeg)
        if len(self._buffer) == self.shard_size:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            data = np.frombuffer(b"".join(self._buffer), dtype=np.uint8)
            self.writer.add(self.split, f"jpeg_{self._shard:05d}", data)
            self._shard += 1
            self._buffer, self._used = [], 0

    def close(self) -> int:
        self._flush()
        if not self.labels:
            raise DatasetError(f"split {self.split!r}: no images found")
        self.writer.add(self.split, "labels", np.asarray(self.labels, dtype=np.int64))
        self.writer.add(self.split, "ranges", np.asarray(self.ranges, dtype=np.int64))
        self.writer.set_num_examples(self.split, len(self.labels))
        return len(self.labels)


def write_jpeg_splits(out_dir: PathLike, name: str,
                      splits: Mapping[str, Iterable[Tuple[bytes, int]]],
                      extra_meta: Optional[Mapping] = None, overwrite: bool = False,
                      shard_size: int = SHARD_SIZE) -> Path:
    """Write ``splits`` (split -> iterable of (JPEG bytes, label)) as ``<out_dir>/<name>`` in
    the sharded layout above, atomically; streams, holding one shard in memory."""
    extra = dict(extra_meta or {}, layout="jpeg-shards", shard_size=int(shard_size))
    with PreparedWriter(out_dir, name, extra, overwrite) as writer:
        for split, examples in splits.items():
            shards = _ShardedJpegWriter(writer, split, shard_size)
            for jpeg, label in examples:
                shards.add(jpeg, label)
            shards.close()
    return writer.final_dir


def _open_tar(path: Path) -> tarfile.TarFile:
    if not path.is_file():
        raise DatasetError(f"{path} is missing: ImageNet must be prepared from your own "
                           f"ILSVRC2012 archives ({TRAIN_TAR}, {VAL_TAR} and the validation "
                           f"labels) in --source_dir")
    try:
        return tarfile.open(path, mode="r|*")  # streaming: one pass, no index of 140 GB
    except tarfile.TarError as e:
        raise DatasetError(f"{path}: not a readable tar archive ({e})")


def _train_examples(path: Path, synsets: Sequence[str]) -> Iterator[Tuple[bytes, int]]:
    """(JPEG bytes, label) of every image of the train tar, class tar by class tar."""
    index = {s: i for i, s in enumerate(synsets)}
    with _open_tar(path) as outer:
        for member in outer:
            stem = member.name.rsplit("/", 1)[-1].removesuffix(".tar")
            if not member.isfile() or stem not in index:
                continue
            inner_bytes = outer.extractfile(member).read()
            with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
                for image in inner:
                    if image.isfile():
                        yield inner.extractfile(image).read(), index[stem]


def _train_synsets(path: Path) -> List[str]:
    """The sorted synset ids of the train tar's class tars (one cheap pass over headers)."""
    with _open_tar(path) as outer:
        names = [m.name.rsplit("/", 1)[-1].removesuffix(".tar") for m in outer if m.isfile()]
    synsets = sorted(n for n in names if _SYNSET.match(n))
    if not synsets:
        raise DatasetError(f"{path}: no per-class tars (n########.tar) inside")
    return synsets


def read_val_labels(path: Path) -> List[str]:
    """The synset id of each validation image, in image-number order (index 0 = image 1)."""
    text = path.read_text()
    if path.suffix == ".csv":  # Kaggle: ImageId,PredictionString "n01751748 x y x y ..."
        rows = list(csv.DictReader(io.StringIO(text)))
        if not rows or "ImageId" not in rows[0] or "PredictionString" not in rows[0]:
            raise DatasetError(f"{path}: expected the columns ImageId,PredictionString")
        by_number = {int(r["ImageId"].rsplit("_", 1)[-1]): r["PredictionString"].split()[0]
                     for r in rows}
        labels = [by_number.get(i + 1, "") for i in range(len(by_number))]
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    bad = next((i for i, s in enumerate(labels) if not _SYNSET.match(s)), None)
    if bad is not None:
        raise DatasetError(f"{path}: entry {bad + 1} is {labels[bad]!r}, not a synset id "
                           f"(n########)")
    return labels


def _find_val_labels(source_dir: Path) -> Path:
    for name in VAL_LABEL_FILES:
        if (source_dir / name).is_file():
            return source_dir / name
    raise DatasetError(f"{source_dir}: no validation labels; put one of "
                       f"{', '.join(VAL_LABEL_FILES)} there")


def _val_examples(path: Path, labels: Sequence[str],
                  synsets: Sequence[str]) -> Iterator[Tuple[bytes, int]]:
    """(JPEG bytes, label) of the val tar's images in image-number order."""
    index = {s: i for i, s in enumerate(synsets)}
    found = {}
    with _open_tar(path) as tar:
        for member in tar:
            m = _VAL_NAME.search(member.name)
            if member.isfile() and m:
                found[int(m.group(1))] = tar.extractfile(member).read()
    if len(found) != len(labels):
        raise DatasetError(f"{path}: {len(found)} validation images, but the labels file "
                           f"lists {len(labels)}")
    for number in sorted(found):
        synset = labels[number - 1]
        if synset not in index:
            raise DatasetError(f"validation image {number}: synset {synset} is not one of "
                               f"the train classes")
        yield found[number], index[synset]


def prepare_imagenet(out_dir: PathLike, source_dir: Optional[PathLike],
                     overwrite: bool = False, check_sizes: bool = True,
                     shard_size: int = SHARD_SIZE) -> Path:
    """Prepare ``<out_dir>/imagenet`` from the ILSVRC2012 archives in ``source_dir``.

    Holds the validation JPEGs (6.4 GB) in memory to put them in image-number order; train
    streams. ``check_sizes`` requires the official 1,281,167 / 50,000 images (off in tests).
    """
    if source_dir is None:
        raise DatasetError("imagenet needs --source_dir: the folder with your "
                           f"{TRAIN_TAR}, {VAL_TAR} and validation labels")
    source_dir = Path(source_dir).expanduser()
    train_tar, val_tar = source_dir / TRAIN_TAR, source_dir / VAL_TAR
    label_file = _find_val_labels(source_dir)
    synsets = _train_synsets(train_tar)
    if check_sizes and len(synsets) != NUM_CLASSES:
        raise DatasetError(f"{train_tar}: {len(synsets)} class tars, expected {NUM_CLASSES}")
    val_labels = read_val_labels(label_file)
    folder = write_jpeg_splits(
        out_dir, NAME,
        {"train": _train_examples(train_tar, synsets),
         "validation": _val_examples(val_tar, val_labels, synsets)},
        extra_meta={"source": str(source_dir), "val_labels": label_file.name,
                    "synsets": synsets,
                    "label_rule": "index of the synset id in the sorted train synsets"},
        overwrite=overwrite, shard_size=shard_size)
    if check_sizes:
        meta = read_meta(out_dir, NAME)
        for split, n in SIZES.items():
            got = meta["splits"][split]["num_examples"]
            if got != n:
                raise DatasetError(f"{folder}: {split} has {got} images, expected {n} "
                                   f"(incomplete archives?)")
    return folder


def prepare_imagenet_v2(out_dir: PathLike, tfds_data_dir: Optional[PathLike] = None,
                        overwrite: bool = False) -> Path:
    """Prepare ``<out_dir>/imagenet_v2`` (split ``test``) from TFDS
    ``imagenet_v2/matched-frequency``, keeping the encoded JPEG bytes."""
    try:
        import tensorflow_datasets as tfds  # optional: only needed to prepare
    except ImportError as e:
        raise DatasetError("preparing imagenet_v2 needs tensorflow-datasets "
                           f"(pip install 'algoperf[data]') ({e})")
    kwargs = {"data_dir": str(tfds_data_dir)} if tfds_data_dir is not None else {}
    ds = tfds.load("imagenet_v2/matched-frequency", split="test", shuffle_files=False,
                   decoders={"image": tfds.decode.SkipDecoding()}, **kwargs)
    examples = ((bytes(ex["image"]), int(ex["label"])) for ex in tfds.as_numpy(ds))
    folder = write_jpeg_splits(out_dir, V2_NAME, {"test": examples},
                               extra_meta={"source": "tfds imagenet_v2/matched-frequency",
                                           "tfds_version": getattr(tfds, "__version__", "")},
                               overwrite=overwrite)
    n = read_meta(out_dir, V2_NAME)["splits"]["test"]["num_examples"]
    if n != V2_SIZE:
        raise DatasetError(f"{folder}: {n} test images, expected {V2_SIZE}")
    return folder


# ----------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------

class JpegSplit:
    """One split of a prepared JPEG dataset: ``len``, ``labels`` int64 [N], ``jpeg(i)``.

    Memory-maps the shards. Pickles as its location only (workers started with 'spawn'
    reopen the files instead of copying gigabytes).
    """

    def __init__(self, data_dir: PathLike, name: str, split: str,
                 expected_num_examples: Optional[int] = None, prepare_hint: Optional[str] = None,
                 indices: Optional[np.ndarray] = None):
        self._args = (str(data_dir), name, split, expected_num_examples, prepare_hint)
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self._open()

    def _open(self) -> None:
        data_dir, name, split, expected, hint = self._args
        meta = read_meta(data_dir, name, prepare_hint=hint)
        folder = dataset_dir(data_dir, name)
        if meta["extra"].get("layout") != "jpeg-shards":
            raise DatasetError(f"{folder}/meta.json: not a JPEG-shard dataset")
        arrays = read_prepared(data_dir, name, split, expected, hint)
        self.shard_size = int(meta["extra"]["shard_size"])
        n = meta["splits"][split]["num_examples"]
        self._labels, self._ranges = arrays["labels"], arrays["ranges"]
        self._shards = [arrays[f"jpeg_{k:05d}"] for k in range(-(-n // self.shard_size))]
        self.labels = np.asarray(self._labels if self.indices is None
                                 else self._labels[self.indices])

    def __getstate__(self):
        return {"_args": self._args, "indices": self.indices}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return len(self.labels)

    def jpeg(self, i: int) -> memoryview:
        """The encoded bytes of example ``i`` (of this view), without a copy."""
        j = int(i if self.indices is None else self.indices[i])
        start, end = self._ranges[j]
        return memoryview(self._shards[j // self.shard_size][start:end])

    def subset(self, indices: np.ndarray) -> "JpegSplit":
        """A view of the examples ``indices`` (e.g. the train-eval subset)."""
        base = np.arange(len(self)) if self.indices is None else self.indices
        view = JpegSplit.__new__(JpegSplit)
        view.__setstate__({"_args": self._args, "indices": base[np.asarray(indices)]})
        return view


def load_jpeg_split(data_dir: PathLike, name: str, split: str,
                    expected: Optional[int] = None) -> JpegSplit:
    """A prepared split; ``data_dir`` is the data root or the dataset folder itself (for
    ``imagenet_v2`` also the sibling of a given ``imagenet`` folder)."""
    root = Path(data_dir).expanduser()
    if name == V2_NAME and not dataset_dir(root, name).exists() \
            and dataset_dir(root.parent, name).exists():
        root = root.parent
    return JpegSplit(root, name, split, expected)


# ----------------------------------------------------------------------------------------
# Decoding and per-example transforms
# ----------------------------------------------------------------------------------------

def decode(jpeg) -> Image.Image:
    """Encoded bytes (JPEG; also PNG or CMYK JPEG, which ImageNet train has) -> RGB image."""
    return Image.open(io.BytesIO(jpeg)).convert("RGB")


def augment_train(image: Image.Image, rng: np.random.Generator, size: int,
                  aug: "AugmentConfig") -> np.ndarray:
    """Random resized crop -> flip -> RandAugment: uint8 [size, size, 3].
    Draws in order: the crop box, the flip bit (if ``aug.flip``), RandAugment's draws."""
    box = T.random_resized_crop_box(rng, image.height, image.width, aug.crop_scale,
                                    aug.crop_ratio)
    image = T.crop_resize(image, box, size)
    if aug.flip and rng.random() < 0.5:
        image = T.hflip(image)
    if aug.randaug_layers:
        image = T.rand_augment(image, rng, aug.randaug_layers, aug.randaug_magnitude)
    return np.asarray(image, dtype=np.uint8)


class AugmentConfig:
    """Train augmentation settings (defaults: AlgoPerf's ImageNet ViT pipeline)."""

    def __init__(self, crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), flip=True,
                 randaug_layers=2, randaug_magnitude=10.0, mixup_alpha=0.2):
        self.crop_scale, self.crop_ratio, self.flip = tuple(crop_scale), tuple(crop_ratio), flip
        self.randaug_layers, self.randaug_magnitude = int(randaug_layers), randaug_magnitude
        self.mixup_alpha = mixup_alpha


def example_rng(seed: int, batch: int, position: int) -> np.random.Generator:
    """The generator of the example at ``position`` of train batch ``batch``: a Philox stream
    keyed by (seed, 1) starting at counter (0, 0, batch, position); streams of different
    examples never meet (each would need 2^64 draws). Cheap to create, unlike a SeedSequence.
    """
    key = [int(seed) & 0xFFFFFFFFFFFFFFFF, 1]
    return np.random.Generator(np.random.Philox(key=key, counter=[0, 0, int(batch),
                                                                   int(position)]))


def batch_rng(seed: int, batch: int) -> np.random.Generator:
    """The generator of whole-batch draws (mixup's lambda) of train batch ``batch``
    (key (seed, 2): disjoint from every ``example_rng``)."""
    key = [int(seed) & 0xFFFFFFFFFFFFFFFF, 2]
    return np.random.Generator(np.random.Philox(key=key, counter=[0, 0, int(batch), 0]))


class _Chunks:
    """Item k = chunk k % C of this process's part of batch k // C: ``images`` uint8
    [chunk, S, S, 3] (filled in place: ``buffers``), ``{"labels": int64 [n], "weights": float32
    [n], "batch": b, "count": n}``, n <= chunk (the last chunk of a part may be shorter).

    Batch b holds the global positions [0, B); this process makes positions [lo, hi) (its
    DDP slice), in chunks of ``chunk``. Train batches take their example indices from
    ``iterators.epoch_permutation`` (the stream of ``iterators.batch_iterator``); eval batches
    are the split in order, and positions past its end are zero padding with weight 0.
    """

    def __init__(self, split: JpegSplit, batch_size: int, part: Tuple[int, int], chunk: int,
                 size: int, seed: int, train: bool, aug: AugmentConfig, resize_size: int,
                 cache_decoded: bool = False):
        self.split, self.batch_size, self.size = split, batch_size, size
        # example index -> its decoded image, in the process that makes the chunks
        self._decoded: Optional[Dict[int, Image.Image]] = {} if cache_decoded else None
        self.lo, self.hi = part
        self.chunk = max(1, min(chunk, self.hi - self.lo))
        self.seed, self.train, self.aug, self.resize_size = seed, train, aug, resize_size
        self.chunks_per_batch = -(-(self.hi - self.lo) // self.chunk)
        self.per_epoch = len(split) // batch_size if train else -(-len(split) // batch_size)
        self.buffers = {"images": ((self.chunk, size, size, 3), np.uint8)}
        self._perm_epoch, self._perm = None, None

    def _indices(self, b: int) -> np.ndarray:
        if not self.train:
            return np.arange(b * self.batch_size, min((b + 1) * self.batch_size,
                                                      len(self.split)))
        epoch, pos = divmod(b, self.per_epoch)
        if self._perm_epoch != epoch:
            self._perm = iterators.epoch_permutation(len(self.split), self.seed, epoch)
            self._perm_epoch = epoch
        return self._perm[pos * self.batch_size:(pos + 1) * self.batch_size]

    def __call__(self, k: int, out: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        b, c = divmod(int(k), self.chunks_per_batch)
        start = self.lo + c * self.chunk
        stop = min(start + self.chunk, self.hi)
        indices = self._indices(b)
        images = out["images"]
        images[:] = 0
        labels = np.zeros(stop - start, dtype=np.int64)
        weights = np.zeros(stop - start, dtype=np.float32)
        for j, position in enumerate(range(start, min(stop, len(indices)))):
            i = indices[position]
            image = self._decode(i)
            if self.train:
                images[j] = augment_train(image, example_rng(self.seed, b, position),
                                          self.size, self.aug)
            else:
                images[j] = np.asarray(T.center_crop_resize(image, self.size,
                                                            self.resize_size))
            labels[j], weights[j] = self.split.labels[i], 1.0
        return {"labels": labels, "weights": weights, "batch": b, "count": stop - start}

    def _decode(self, i: int) -> Image.Image:
        """Example i decoded. Decoding is deterministic and the transforms make new images,
        so with ``cache_decoded`` each example is decoded once and later epochs reuse it."""
        if self._decoded is None:
            return decode(self.split.jpeg(i))
        image = self._decoded.get(i)
        if image is None:
            image = self._decoded[i] = decode(self.split.jpeg(i))
        return image


class ImageLoader:
    """Batches of uint8 images from a ``JpegSplit``, decoded and transformed by workers.

    Train (``train=True``): an infinite stream of full batches, epoch e in the order of
    ``epoch_permutation(N, seed, e)``; ``skip(n)`` continues n batches further on without
    producing them. Eval: each example once, in order, the last batch zero-padded, with
    ``weights`` 1 for real examples and 0 for padding (as ``iterators.eval_iterator``).

    Yields ``{"images": uint8 [b, size, size, 3], "labels": int64 [b], "weights": float32 [b],
    "batch": index}`` (numpy) where b = this process's share of ``batch_size`` (``part``).

    Args:
      part: (lo, hi): the positions of each global batch this process makes (DDP slice);
        default the whole batch.
      num_workers: worker processes (0: decode in this process). Each makes whole chunks of
        ``chunk`` examples; up to ``prefetch`` chunks per worker are in flight.
      cache_decoded: keep every decoded image in the memory of the process that decoded it
        (each worker's), so that only the first epoch decodes: for splits that fit in memory.
        The batches are the same either way.
    """

    def __init__(self, split: JpegSplit, batch_size: int, size: int, seed: int = 0,
                 train: bool = True, aug: Optional[AugmentConfig] = None,
                 resize_size: int = 256, part: Optional[Tuple[int, int]] = None,
                 num_workers: int = 0, chunk: int = 32, prefetch: int = 4,
                 start_batch: int = 0, cache_decoded: bool = False):
        if train and len(split) < batch_size:
            raise ValueError(f"only {len(split)} examples, fewer than one batch of "
                             f"{batch_size}")
        part = part or (0, batch_size)
        self._chunks = _Chunks(split, batch_size, part, chunk, size, seed, train,
                               aug or AugmentConfig(), resize_size, cache_decoded)
        self._num_workers, self._prefetch, self._train = num_workers, prefetch, train
        self._start = start_batch
        self._pool = None

    def __len__(self) -> int:
        """Batches per epoch (eval: the number of batches this loader yields)."""
        return self._chunks.per_epoch

    def _open(self) -> None:
        c = self._chunks
        stop = None if self._train else c.per_epoch * c.chunks_per_batch
        self._pool = OrderedPool(c, self._start * c.chunks_per_batch, stop, self._num_workers,
                                 self._prefetch)

    def skip(self, count: int) -> None:
        self._start += int(count)
        self.close()  # reopened at the new position

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __iter__(self):
        return self

    def __next__(self) -> Dict[str, np.ndarray]:
        if self._pool is None:
            if not self._train and self._start >= self._chunks.per_epoch:
                raise StopIteration
            self._open()
        chunks = [next(self._pool) for _ in range(self._chunks.chunks_per_batch)]
        self._start += 1
        batch = {key: np.concatenate([c[key] for c in chunks]) for key in ("labels", "weights")}
        batch["images"] = np.concatenate([c["images"][:c["count"]] for c in chunks])
        batch["batch"] = chunks[0]["batch"]
        return batch


# ----------------------------------------------------------------------------------------
# imagenet_tiny: generated images in the same JPEG-shard format
# ----------------------------------------------------------------------------------------

TINY_SIZES = {"train": 16_384, "validation": 2_048, "test": 2_048}
TINY_IMAGE_SIZE = 32
TINY_NUM_CLASSES = 16
# Bump when the generator's output changes: cached copies are then regenerated.
TINY_GENERATOR_VERSION = 2
_OBJ = 6                     # object side, pixels
_NOISE = 12.0                # background pixel noise sd, grey levels
_TINY_JPEG_QUALITY = 95
# The 16 classes: B's direction from A (8 compass directions, +-12 degrees) x the distance
# band of their centres (pixels; the squares never overlap); class = 8 * band + direction.
_DIRECTIONS = 8
_ANGLE_JITTER = 12.0
_BANDS = ((9.0, 12.0), (16.0, 21.0))


def _tiny_centres(rng: np.random.Generator, labels: np.ndarray) -> Tuple[np.ndarray, ...]:
    """Centres (ay, ax), (by, bx) float [n] with B at the class's direction and distance band
    from A, both squares inside the image (rejection sampling, vectorised)."""
    n = len(labels)
    direction, band = labels % _DIRECTIONS, labels // _DIRECTIONS
    lo, hi = _OBJ / 2, TINY_IMAGE_SIZE - _OBJ / 2
    bands = np.asarray(_BANDS)
    out = np.zeros((4, n))
    todo = np.arange(n)
    while len(todo):
        m = len(todo)
        angle = np.deg2rad(360.0 / _DIRECTIONS * direction[todo]
                           + rng.uniform(-_ANGLE_JITTER, _ANGLE_JITTER, m))
        r = rng.uniform(bands[band[todo], 0], bands[band[todo], 1])
        ay, ax = rng.uniform(lo, hi, m), rng.uniform(lo, hi, m)
        by, bx = ay + r * np.sin(angle), ax + r * np.cos(angle)   # y grows downwards
        ok = (by >= lo) & (by <= hi) & (bx >= lo) & (bx <= hi)
        out[:, todo[ok]] = np.stack([ay, ax, by, bx])[:, ok]
        todo = todo[~ok]
    return tuple(out)


def generate_imagenet_tiny(seed: int = 0, sizes: Optional[Mapping[str, int]] = None
                           ) -> Dict[str, Dict[str, np.ndarray]]:
    """``{split: {"images": uint8 [N, 32, 32, 3], "labels": int64 [N]}}``, deterministic in seed.

    Two 6x6 squares on a noisy grey background, at any pixel position: A reddish, B bluish
    (random levels). The class (16) is where B lies relative to A: its direction (8 compass
    directions from east, clockwise as y grows downwards, +-12 degrees) x the distance band
    of the centres (9-12 or 16-21 pixels); ``tiny_class_of``. No single patch tells the
    class, nor does either object's position or colour: the model has to relate the two
    objects (the distance is not a sum of per-token terms, so pooling token features cannot
    give it; attention can). Balanced, shuffled classes.
    """
    sizes = dict(TINY_SIZES, **(sizes or {}))
    out = {}
    for split, split_seed in zip(("train", "validation", "test"),
                                 np.random.SeedSequence(int(seed)).spawn(3)):
        n = int(sizes[split])
        rng = np.random.default_rng(split_seed)
        labels = rng.permutation(np.arange(n) % TINY_NUM_CLASSES).astype(np.int64)
        centres = _tiny_centres(rng, labels)
        s = TINY_IMAGE_SIZE
        images = rng.standard_normal(size=(n, s, s, 3), dtype=np.float32)
        images *= _NOISE
        images += rng.uniform(60, 190, size=(n, 1, 1, 1)).astype(np.float32)  # grey background
        ys, xs = np.arange(s)[None, :, None], np.arange(s)[None, None, :]
        for (cy, cx), hue in zip(((centres[0], centres[1]), (centres[2], centres[3])),
                                 ((0, 1, 1), (1, 1, 0))):
            top = np.floor(cy - _OBJ / 2 + 0.5).astype(int)[:, None, None]
            left = np.floor(cx - _OBJ / 2 + 0.5).astype(int)[:, None, None]
            inside = (ys >= top) & (ys < top + _OBJ) & (xs >= left) & (xs < left + _OBJ)
            # A reddish, B bluish: one strong channel, the other two dim (random levels).
            colour = np.where(np.asarray(hue, bool), rng.uniform(0, 70, size=(n, 1, 1, 3)),
                              rng.uniform(190, 255, size=(n, 1, 1, 3))).astype(np.float32)
            np.copyto(images, colour, where=inside[..., None])
        np.clip(np.rint(images, out=images), 0, 255, out=images)
        out[split] = {"images": images.astype(np.uint8),
                      "labels": labels}
    return out


def tiny_class_of(dy: float, dx: float) -> int:
    """The class of B at (dy, dx) pixels from A (y down), or -1 outside every class region."""
    r, angle = np.hypot(dy, dx), np.degrees(np.arctan2(dy, dx)) % 360
    direction = int(np.rint(angle / (360 / _DIRECTIONS))) % _DIRECTIONS
    off = abs((angle - direction * 360 / _DIRECTIONS + 180) % 360 - 180)
    band = next((k for k, (lo, hi) in enumerate(_BANDS) if lo <= r <= hi), None)
    return -1 if band is None or off > _ANGLE_JITTER else _DIRECTIONS * band + direction


def encode_jpeg(image: np.ndarray, quality: int = _TINY_JPEG_QUALITY) -> bytes:
    """uint8 [H, W, 3] -> JPEG bytes (4:4:4, so small objects keep their colour)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def tiny_name(seed: int = 0, sizes: Optional[Mapping[str, int]] = None) -> str:
    """Folder name of a generated copy: ``imagenet_tiny`` for the defaults."""
    return generated_name(TINY_NAME, TINY_SIZES, seed, sizes)


def ensure_imagenet_tiny(data_dir: PathLike, seed: int = 0,
                         sizes: Optional[Mapping[str, int]] = None,
                         overwrite: bool = False) -> Path:
    """Generate imagenet_tiny (JPEG shards, like prepared ImageNet) into
    ``<data_dir>/<tiny_name(seed, sizes)>`` unless already there with the same settings."""
    def write(name, sizes, extra, overwrite):
        splits = generate_imagenet_tiny(seed, sizes)
        examples = {split: ((encode_jpeg(img), lab)
                            for img, lab in zip(a["images"], a["labels"]))
                    for split, a in splits.items()}
        return write_jpeg_splits(data_dir, name, examples, overwrite=overwrite,
                                 extra_meta=extra)
    return ensure_generated(data_dir, TINY_NAME, TINY_SIZES, TINY_GENERATOR_VERSION, seed, sizes,
                            overwrite, write, "imagenet_tiny: two-object relation images "
                            "(workloads.datasets.imagenet)")


def load_imagenet_tiny(data_dir: PathLike, split: str, seed: int = 0,
                       sizes: Optional[Mapping[str, int]] = None) -> JpegSplit:
    sizes = dict(TINY_SIZES, **(sizes or {}))
    ensure_imagenet_tiny(data_dir, seed, sizes)
    return JpegSplit(data_dir, tiny_name(seed, sizes), split, sizes[split],
                     f"algoperf data --dataset {TINY_NAME} --data_dir {data_dir}")


# ----------------------------------------------------------------------------------------
# Full-size shapes for loader benchmarks
# ----------------------------------------------------------------------------------------

def write_full_shapes_imagenet(data_dir: PathLike, num_distinct: int = 256,
                               seed: int = 0) -> Path:
    """A prepared ``imagenet`` with the real train split size (1,281,167) and real-looking
    JPEGs, for loader benchmarks: ``num_distinct`` smooth random images of ImageNet's typical
    sizes (short side 333-500, aspect 3:4-4:3, ~110 KB at quality 90), each example's byte
    range pointing at one of them (one shard: ``shard_size`` covers the whole split). The
    loader does exactly the work of real ImageNet: decode a JPEG of that size, augment."""
    rng = np.random.default_rng(seed)
    jpegs = []
    for _ in range(num_distinct):
        h = int(rng.integers(333, 501))
        w = int(np.clip(h * rng.uniform(3 / 4, 4 / 3), 200, 700))
        coarse = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC))
        noisy = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
        jpegs.append(encode_jpeg(noisy, quality=90))
    sizes = np.array([len(j) for j in jpegs])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n = SIZES["train"]
    which = rng.integers(0, num_distinct, n)
    extra = {"source": "synthetic full shapes", "layout": "jpeg-shards", "shard_size": n}
    with PreparedWriter(data_dir, NAME, extra, overwrite=True) as writer:
        writer.add("train", "jpeg_00000", np.frombuffer(b"".join(jpegs), np.uint8))
        writer.add("train", "labels", rng.integers(0, NUM_CLASSES, n).astype(np.int64))
        writer.add("train", "ranges", np.stack([starts[which], starts[which] + sizes[which]], 1))
        writer.set_num_examples("train", n)
    return writer.final_dir
