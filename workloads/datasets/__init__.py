"""Datasets in the prepared on-disk form, and framework-neutral batch iterators.

``prepared``: the on-disk format (``write_prepared`` / ``read_prepared``, ``DatasetError``).
``iterators``: ``batch_iterator`` (training), ``eval_iterator`` (padded, with weights),
``shard_batch`` (one DDP rank's slice). One module per dataset (``mnist``, ...).
"""
from workloads.datasets.iterators import (batch_iterator, epoch_permutation, eval_iterator,
                                          num_eval_batches, shard_batch)
from workloads.datasets.prepared import (DatasetError, PreparedWriter, dataset_dir, read_meta,
                                         read_prepared, write_prepared)

__all__ = ["DatasetError", "PreparedWriter", "batch_iterator", "dataset_dir",
           "epoch_permutation", "eval_iterator", "num_eval_batches", "read_meta",
           "read_prepared", "shard_batch", "write_prepared"]
