"""Reading an image-classification set from tensorflow-datasets at prepare time only.

AlgoPerf holds out its validation split from the end of the official train split:
``train = tfds train[:num_train]``, ``validation = tfds train[num_train:]``, ``test = tfds
test``, each in TFDS's stored order. The caller imports ``tensorflow_datasets`` (so it can say
what is missing in its own words) and passes the module in.
"""
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from workloads.datasets.prepared import DatasetError, PathLike


def image_splits_from_tfds(tfds, name: str, num_train: int, image_shape: Tuple[int, ...],
                           tfds_data_dir: Optional[PathLike] = None,
                           expected_sizes: Optional[Mapping[str, int]] = None):
    """Returns (splits, extra_meta): splits[split] = {"images": uint8 [N, *image_shape],
    "labels": int64 [N]}; ``expected_sizes`` (optional) are checked per split."""
    kwargs = {"data_dir": str(tfds_data_dir)} if tfds_data_dir is not None else {}

    def load(tfds_split: str) -> Dict[str, np.ndarray]:
        ds = tfds.load(name, split=tfds_split, as_supervised=True, shuffle_files=False,
                       batch_size=-1, **kwargs)  # the whole split as one (image, label) pair
        images, labels = tfds.as_numpy(ds)
        return {"images": np.asarray(images, dtype=np.uint8).reshape(-1, *image_shape),
                "labels": np.asarray(labels, dtype=np.int64)}

    splits = {"train": load(f"train[:{num_train}]"),
              "validation": load(f"train[{num_train}:]"),
              "test": load("test")}
    for split, arrays in splits.items():
        if expected_sizes and len(arrays["labels"]) != expected_sizes[split]:
            raise DatasetError(f"tfds {name} {split}: {len(arrays['labels'])} examples, "
                               f"expected {expected_sizes[split]}")
    extra = {"source": "tfds", "tfds_version": getattr(tfds, "__version__", "unknown"),
             "split_rule": f"train = tfds train[:{num_train}], validation = tfds "
                           f"train[{num_train}:], test = tfds test (stored order)"}
    return splits, extra
