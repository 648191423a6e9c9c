"""What every workload does the same way in every framework: batches, evals and metrics on
numpy arrays. The framework side (``pytorch_workload.PyTorchModel``, ``jax_workload.JaxModel``)
supplies only the model, its loss, its parameter types and the step from a numpy batch to the
device.

The seam, one train step and one eval batch (B = global batch, P = processes)::

    DataLayer (numpy)                                 framework model mixin
    ---------------------------------------------     -------------------------------------
    train_source(...): numpy batches [B/P, ...],  ->  _model_batch(batch, train=True, rng):
      this process's rows, host augmentation          on the device, framework types,
      (crop, flip, graph packing), resumable            on-device preprocessing (mixup,
                                                        standardisation)
    _eval_batches(split, ...): numpy [B/P, ...],  ->  _eval_logits(params, state, model_batch)
      padded, 'weights' 1 real / 0 padding         <-   -> numpy float32 [B/P, C]
    metric sums from numpy logits (float64),
    summed / gathered over processes by the backend

A family (``workloads/<family>/data.py``) adds ``load_arrays(data_dir, split)`` and, where its
batches are not plain example arrays, its own ``train_source`` / ``_eval_batches`` and metric.
Everything a process needs to know about the others goes through ``self._backend``
(``rank``, ``world_size``, ``all_sum``, ``all_gather``), handed to the workload when it is made.
"""
from typing import Any, Dict, Iterator, Optional

import numpy as np

from algoperf import eval_guard, random_utils, spec
from workloads.datasets import iterators

EVAL_SPLITS = (("eval_train", "train"), ("validation", "validation"), ("test", "test"))


def softmax_cross_entropy_sums(logits: np.ndarray, labels: np.ndarray,
                               weights: np.ndarray) -> Dict[str, float]:
    """{'loss': sum_i w_i (logsumexp(z_i) - z_i[y_i]), 'accuracy': sum_i w_i [argmax z_i = y_i]}
    in float64; logits [N, C], labels int [N], weights [N]."""
    z = logits.astype(np.float64)
    top = z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    picked = np.take_along_axis(z, labels.astype(np.int64)[:, None], axis=1)[:, 0]
    w = weights.astype(np.float64)
    correct = (logits.argmax(axis=1) == labels).astype(np.float64)
    return {"loss": float(np.sum(w * (log_norm - picked))), "accuracy": float(np.sum(w * correct))}


class TrainQueue:
    """This process's train batches as the framework wants them: ``source`` yields numpy
    batches (and the generator of their on-device randomness), ``to_model`` places them.

    Stops after ``num_batches`` (None: never); ``skip(n)`` moves the source on n batches without
    producing them, so a resumed run sees exactly what the killed one would have seen next."""

    def __init__(self, source, to_model, num_batches: Optional[int]):
        self._source, self._to_model, self._remaining = source, to_model, num_batches

    def skip(self, count: int) -> None:
        self._source.skip(count)

    def __iter__(self):
        return self

    def __next__(self) -> Dict[str, Any]:
        if self._remaining is not None:
            if self._remaining <= 0:
                raise StopIteration
            self._remaining -= 1
        batch, rng = self._source.next()
        return self._to_model(batch, True, rng)


class ArraySource:
    """Reshuffled batches of a dict of example arrays: this process's rows, augmented on the
    host by ``preprocess(batch, train=True, rng)`` with ``rng`` a function of (seed, batch
    index) only, so ``skip`` keeps the augmentation of every later batch."""

    def __init__(self, arrays, global_batch_size: int, seed: int, rank: int, world: int,
                 preprocess):
        self._arrays, self._global_batch_size, self._seed = arrays, global_batch_size, seed
        self._rank, self._world, self._preprocess = rank, world, preprocess
        self._start = 0
        self.skip(0)

    def skip(self, count: int) -> None:
        self._start += count
        self._batches = iterators.batch_iterator(self._arrays, self._global_batch_size,
                                                 self._seed, start_batch=self._start)
        self._index = self._start

    def next(self):
        batch = iterators.shard_batch(next(self._batches), self._rank, self._world)
        rng = np.random.default_rng((self._seed, self._index))
        self._index += 1
        return self._preprocess(batch, True, rng), None


class DataLayer:
    """Mixin placed after the framework's model mixin and before the workload's definition.

    ``backend``: the run's (``algoperf.backends``); by default a fresh one of the model
    mixin's ``framework``, for a workload used on its own (tests, notebooks)."""

    # Prepared full-size data must have the official split sizes; tests on small files in
    # the same format turn this off.
    check_sizes = True

    def __init__(self, *args, backend=None, **kwargs):
        super().__init__(*args, **kwargs)
        if backend is None:
            from algoperf.backends import get_backend
            backend = get_backend(self.framework)
        self._backend = backend
        self._eval_arrays: Dict[str, Any] = eval_guard.HeldOutCache()

    # --- family hooks (numpy) -----------------------------------------------------------------
    def load_arrays(self, data_dir: str, split: str):
        """A split's data: 'train', 'eval_train', 'validation' or 'test'."""
        raise NotImplementedError

    def read_split(self, read, split: str) -> Dict[str, np.ndarray]:
        """``read(stored_split)`` for a split of example arrays; 'eval_train' is the first
        ``num_eval_train_examples`` examples of 'train' (evaluated unaugmented)."""
        if split != "eval_train":
            return read(split)
        return {k: v[:self.num_eval_train_examples] for k, v in read("train").items()}

    def preprocess(self, arrays: Dict[str, np.ndarray], train: bool,
                   rng: Optional[np.random.Generator]) -> Dict[str, np.ndarray]:
        """A numpy batch of stored examples -> {'inputs', 'targets', ...} numpy arrays, the
        host's part of the input pipeline (augmentation only when ``train``)."""
        raise NotImplementedError

    def train_source(self, arrays, global_batch_size: int, seed: int):
        """The numpy batches of this process (``next() -> (batch, rng)``, ``skip(n)``)."""
        return ArraySource(arrays, global_batch_size, seed, self._backend.rank,
                           self._backend.world_size, self.preprocess)

    # --- the input queue ------------------------------------------------------------------
    def _build_input_queue(self, data_rng: spec.RandomState, split: str, data_dir: str,
                           global_batch_size: int, cache: Optional[bool] = None,
                           repeat_final_dataset: Optional[bool] = None,
                           num_batches: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        """Infinite, reshuffled batches of ``split``: this process's slice, on its device."""
        del cache, repeat_final_dataset
        source = self.train_source(self.load_arrays(data_dir, split), global_batch_size,
                                   random_utils.to_int(data_rng))
        return TrainQueue(source, self._model_batch, num_batches)

    # --- evaluation -------------------------------------------------------------------------
    def _eval_batches(self, split: str, data_dir: str, global_batch_size: int,
                      num_examples: int) -> Iterator[Dict[str, np.ndarray]]:
        """Every example of ``split`` once, in order: this process's rows of padded global
        batches, host-preprocessed, with ``weights`` (1 real, 0 padding)."""
        if split not in self._eval_arrays:
            self._eval_arrays[split] = self.load_arrays(data_dir, split)
        arrays = self._eval_arrays[split]
        for batch in iterators.eval_iterator(arrays, global_batch_size, num_examples):
            batch = iterators.shard_batch(batch, self._backend.rank, self._backend.world_size)
            weights = batch.pop("weights")
            yield {**self.preprocess(batch, False, None), "weights": weights}

    def eval_metric_sums(self, logits: np.ndarray, batch: Dict[str, np.ndarray]
                         ) -> Dict[str, float]:
        """Per-batch sums that add up over batches and processes (default: loss, accuracy)."""
        return softmax_cross_entropy_sums(logits, batch["targets"], batch["weights"])

    def _eval_variables(self, params, model_state):
        """The (params, model_state) that ``_eval_logits`` takes, made once per split from
        the submission's (the framework's model mixin may convert its layout)."""
        return params, model_state

    def _eval_model_on_split(self, split: str, num_examples: int, global_batch_size: int,
                             params, model_state, rng, data_dir: str,
                             global_step: int = 0) -> Dict[str, float]:
        del rng, global_step
        params, model_state = self._eval_variables(params, model_state)
        names, sums, seen = None, None, 0.0
        for batch in self._eval_batches(split, data_dir, global_batch_size, num_examples):
            logits = self._eval_logits(params, model_state, self._model_batch(batch, False, None))
            batch_sums = self.eval_metric_sums(logits, batch)
            names = names or sorted(batch_sums)
            values = np.array([batch_sums[k] for k in names], dtype=np.float64)
            sums = values if sums is None else sums + values
            seen += float(np.sum(batch["weights"], dtype=np.float64))
        totals = self._backend.all_sum(np.append(sums, seen))
        counted = int(round(totals[-1]))
        if counted != num_examples:
            raise RuntimeError(f"{self.name} {split}: evaluated {counted} examples, expected "
                               f"{num_examples}")
        return {name: float(total) / num_examples for name, total in zip(names, totals)}

    def eval_model(self, global_batch_size: int, params, model_state, rng, data_dir: str,
                   imagenet_v2_data_dir: Optional[str], global_step: int) -> Dict[str, float]:
        results: Dict[str, float] = {}
        counts = {"eval_train": self.num_eval_train_examples,
                  "validation": self.num_validation_examples, "test": self.num_test_examples}
        for split, prefix in EVAL_SPLITS:
            split_dir = imagenet_v2_data_dir if (split == "test" and imagenet_v2_data_dir) \
                else data_dir
            metrics = self._eval_model_on_split(split, counts[split], global_batch_size,
                                                params, model_state, rng, split_dir,
                                                global_step)
            results.update({f"{prefix}/{k}": v for k, v in metrics.items()})
            if prefix != "train":
                results[f"{prefix}/num_examples"] = counts[split]
        return results
