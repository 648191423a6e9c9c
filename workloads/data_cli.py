"""``algoperf data``: prepare a dataset once into the on-disk form the loaders read.

    algoperf data --dataset mnist --data_dir ./data                  # via tensorflow-datasets
    algoperf data --dataset mnist --data_dir ./data --source_dir ~/Downloads/mnist   # IDX files
    algoperf data --dataset mnist_tiny --data_dir ./data             # generated, no download

Each dataset is one row of ``DATASETS``: a one-line description and a function that takes
the parsed flags and returns the prepared folder. Add a row to support a new dataset.
Nothing downloads at training time; the workloads only read what this command wrote.
"""
import dataclasses
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional

from absl import flags

flags.DEFINE_string("dataset", None, "Dataset to prepare (see DATASETS; e.g. mnist, mnist_tiny).")
flags.DEFINE_string("data_dir", "./data",
                    "Data root: the dataset is written to <data_dir>/<dataset>.")
flags.DEFINE_string("source_dir", None,
                    "Folder with the dataset's original files (MNIST: the four IDX files), "
                    "read instead of tensorflow-datasets.")
flags.DEFINE_string("tfds_data_dir", None,
                    "tensorflow-datasets data_dir (default: TFDS's own, ~/tensorflow_datasets).")
flags.DEFINE_bool("overwrite", False, "Rebuild the dataset even if it is already prepared.")
flags.DEFINE_integer("seed", 0, "Seed of generated datasets (mnist_tiny).")

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class PrepareArgs:
    data_dir: Path
    source_dir: Optional[Path]
    tfds_data_dir: Optional[Path]
    overwrite: bool
    seed: int


def _prepare_mnist(args: PrepareArgs) -> Path:
    from workloads.datasets import mnist
    return mnist.prepare_mnist(args.data_dir, tfds_data_dir=args.tfds_data_dir,
                               source_dir=args.source_dir, overwrite=args.overwrite)


def _prepare_mnist_tiny(args: PrepareArgs) -> Path:
    from workloads.datasets import mnist
    return mnist.ensure_mnist_tiny(args.data_dir, seed=args.seed, overwrite=args.overwrite)


def _prepare_cifar10(args: PrepareArgs) -> Path:
    from workloads.datasets import cifar10
    return cifar10.prepare_cifar10(args.data_dir, tfds_data_dir=args.tfds_data_dir,
                                   overwrite=args.overwrite)


def _prepare_cifar10_tiny(args: PrepareArgs) -> Path:
    from workloads.datasets import cifar10
    return cifar10.ensure_cifar10_tiny(args.data_dir, seed=args.seed, overwrite=args.overwrite)


def _prepare_ogbg_molpcba(args: PrepareArgs) -> Path:
    from workloads.datasets import ogbg_molpcba
    return ogbg_molpcba.prepare_molpcba(args.data_dir, tfds_data_dir=args.tfds_data_dir,
                                        overwrite=args.overwrite)


def _prepare_ogbg_molpcba_tiny(args: PrepareArgs) -> Path:
    from workloads.datasets import ogbg_molpcba
    return ogbg_molpcba.ensure_molpcba_tiny(args.data_dir, seed=args.seed,
                                            overwrite=args.overwrite)


def _prepare_imagenet(args: PrepareArgs) -> Path:
    from workloads.datasets import imagenet
    return imagenet.prepare_imagenet(args.data_dir, args.source_dir, overwrite=args.overwrite)


def _prepare_imagenet_v2(args: PrepareArgs) -> Path:
    from workloads.datasets import imagenet
    return imagenet.prepare_imagenet_v2(args.data_dir, tfds_data_dir=args.tfds_data_dir,
                                        overwrite=args.overwrite)


def _prepare_imagenet_tiny(args: PrepareArgs) -> Path:
    from workloads.datasets import imagenet
    return imagenet.ensure_imagenet_tiny(args.data_dir, seed=args.seed, overwrite=args.overwrite)


@dataclasses.dataclass(frozen=True)
class Dataset:
    description: str
    prepare: Callable[[PrepareArgs], Path]
    # Generated datasets are cheap and self-checking: preparing them again is a no-op.
    idempotent: bool = False


# dataset flag value -> how to prepare it. Dataset modules are imported only when chosen.
DATASETS: Dict[str, Dataset] = {
    "mnist": Dataset("MNIST 50k/10k/10k, from tensorflow-datasets or --source_dir IDX files",
                     _prepare_mnist),
    "mnist_tiny": Dataset("mnist_tiny, generated from --seed (no download)",
                          _prepare_mnist_tiny, idempotent=True),
    "cifar10": Dataset("CIFAR-10 45k/5k/10k, from tensorflow-datasets", _prepare_cifar10),
    "cifar10_tiny": Dataset("cifar10_tiny, generated from --seed (no download)",
                            _prepare_cifar10_tiny, idempotent=True),
    "ogbg_molpcba": Dataset("ogbg-molpcba 350,343/43,793/43,793 graphs, from "
                            "tensorflow-datasets", _prepare_ogbg_molpcba),
    "ogbg_molpcba_tiny": Dataset("ogbg_molpcba_tiny, generated from --seed (no download)",
                                 _prepare_ogbg_molpcba_tiny, idempotent=True),
    "imagenet": Dataset("ImageNet-2012 1,281,167/50,000 from your ILSVRC2012 train/val tars + "
                        "val labels in --source_dir", _prepare_imagenet),
    "imagenet_v2": Dataset("ImageNet-v2 matched-frequency 10,000 (test), from "
                           "tensorflow-datasets", _prepare_imagenet_v2),
    "imagenet_tiny": Dataset("imagenet_tiny, generated from --seed (no download)",
                             _prepare_imagenet_tiny, idempotent=True),
}


def _known() -> str:
    return "\n".join(f"  {name:<12} {d.description}" for name, d in DATASETS.items())


def _error(message: str) -> int:
    print(f"algoperf data: error: {message}", file=sys.stderr)
    return 1


def main(argv) -> int:
    if len(argv) > 1:
        return _error(f"unexpected arguments {argv[1:]} (flags are --name=value)")
    name = FLAGS.dataset
    if name not in DATASETS:
        what = "--dataset is required" if not name else f"unknown dataset {name!r}"
        return _error(f"{what}; known datasets:\n{_known()}")
    dataset = DATASETS[name]
    args = PrepareArgs(
        data_dir=Path(FLAGS.data_dir).expanduser(),
        source_dir=Path(FLAGS.source_dir).expanduser() if FLAGS.source_dir else None,
        tfds_data_dir=Path(FLAGS.tfds_data_dir).expanduser() if FLAGS.tfds_data_dir else None,
        overwrite=FLAGS.overwrite, seed=FLAGS.seed)
    from workloads.datasets.prepared import DatasetError, read_meta

    target = args.data_dir / name
    if target.exists() and not args.overwrite and not dataset.idempotent:
        try:
            read_meta(args.data_dir, name)
        except DatasetError as e:
            return _error(f"{target} exists but is not a usable prepared dataset ({e}); "
                          f"pass --overwrite to rebuild it")
        print(f"{name}: already prepared at {target} (pass --overwrite to rebuild)")
        return 0

    start = time.monotonic()
    try:
        folder = dataset.prepare(args)
        meta = read_meta(folder.parent, folder.name)
    except (DatasetError, FileExistsError) as e:
        return _error(str(e))
    sizes = ", ".join(f"{split} {s['num_examples']:,}" for split, s in meta["splits"].items())
    print(f"{name}: prepared at {folder} ({sizes}) in {time.monotonic() - start:.1f} s")
    return 0
