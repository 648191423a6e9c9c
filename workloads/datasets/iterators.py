"""Framework-neutral batch iterators over in-memory or memory-mapped numpy arrays.

Every dataset yields dicts of arrays that share their leading (example) axis, e.g.
``{"images": uint8 [N, 28, 28], "labels": int64 [N]}``. These iterators turn such a dict into
batches; converting to tensors and moving to a device is the workload's job.

* ``batch_iterator``: training. Repeats forever, reshuffles every epoch. Epoch ``e`` uses a
  permutation drawn from ``(seed, e)`` alone, so the stream is the same on every run and
  machine, and can be restarted at any batch (``start_batch``) after a preemption without
  replaying the earlier epochs.
* ``eval_iterator``: evaluation. Visits every example exactly once in order; the last partial
  batch is padded to full size and a ``weights`` mask (1.0 real, 0.0 padding) tells metrics
  which rows count. Full-size batches keep shapes static and split evenly over DDP ranks.
* ``shard_batch``: one DDP rank's slice of a global batch.
"""
import math
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

Batch = Dict[str, np.ndarray]
Seed = Union[int, np.integer, Sequence[int], np.ndarray]


def _num_examples(arrays: Mapping[str, Any]) -> int:
    if not arrays:
        raise ValueError("arrays is empty: need at least one array")
    sizes = {name: (a.shape[0] if a.ndim else None) for name, a in arrays.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise ValueError(f"arrays must share their leading (example) axis, got sizes {sizes}")
    return next(iter(sizes.values()))


def _check_batch_size(global_batch_size: int) -> int:
    if isinstance(global_batch_size, bool) or int(global_batch_size) != global_batch_size \
            or global_batch_size < 1:
        raise ValueError(f"global_batch_size must be a positive integer, got {global_batch_size!r}")
    return int(global_batch_size)


def _seed_entropy(rng_seed: Seed):
    """An int or a sequence of non-negative ints (e.g. a [2] uint32 PRNG key) for SeedSequence."""
    if isinstance(rng_seed, (int, np.integer)):
        return int(rng_seed)
    return [int(w) for w in np.ravel(np.asarray(rng_seed))]


def epoch_permutation(num_examples: int, rng_seed: Seed, epoch: int) -> np.ndarray:
    """The example order of ``epoch``: int64 [num_examples], a function of (seed, epoch) only."""
    seq = np.random.SeedSequence(entropy=_seed_entropy(rng_seed), spawn_key=(int(epoch),))
    return np.random.default_rng(seq).permutation(num_examples)


def batch_iterator(arrays: Mapping[str, np.ndarray], global_batch_size: int, rng_seed: Seed,
                   shuffle: bool = True, repeat: bool = True, drop_last: bool = True,
                   start_batch: int = 0) -> Iterator[Batch]:
    """Training batches: dicts of the same keys, each value [global_batch_size, ...].

    Args:
      arrays: name -> array [N, ...] (numpy or memory-mapped), all with the same N.
      global_batch_size: examples per batch, summed over all DDP ranks (``shard_batch`` slices).
      rng_seed: int or PRNG key; the shuffle of epoch e depends only on (rng_seed, e).
      shuffle: reshuffle every epoch; otherwise examples come in stored order.
      repeat: start a new epoch after the last batch, forever; otherwise stop after one epoch.
      drop_last: drop each epoch's final partial batch (the default: every batch has the same
        size, and with a fresh shuffle per epoch every example is still seen). With
        ``drop_last=False`` the final batch of an epoch is smaller.
      start_batch: skip this many batches first (resuming a preempted run), computed directly
        rather than by drawing them.

    Yields:
      name -> array [B, ...] (a copy; safe to modify), B = global_batch_size except possibly
      the last batch of an epoch when ``drop_last=False``.
    """
    n = _num_examples(arrays)
    batch_size = _check_batch_size(global_batch_size)
    if drop_last and n < batch_size:
        # Otherwise a repeating iterator would loop forever without yielding anything.
        raise ValueError(f"only {n} examples, fewer than one batch of {batch_size} "
                         f"(pass drop_last=False or a smaller batch)")
    if start_batch < 0:
        raise ValueError(f"start_batch must be >= 0, got {start_batch}")
    # Checks above run at call time; the generator below runs lazily.
    return _train_batches(dict(arrays), n, batch_size, rng_seed, shuffle, repeat, drop_last,
                          int(start_batch))


def _train_batches(arrays, n, batch_size, rng_seed, shuffle, repeat, drop_last, start_batch):
    if n == 0:
        return
    per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
    epoch, first = divmod(start_batch, per_epoch)
    while repeat or epoch == 0:
        order = epoch_permutation(n, rng_seed, epoch) if shuffle else None
        for b in range(first, per_epoch):
            lo, hi = b * batch_size, min((b + 1) * batch_size, n)
            if order is None:
                yield {name: np.array(a[lo:hi]) for name, a in arrays.items()}
            else:
                idx = order[lo:hi]
                yield {name: np.take(a, idx, axis=0) for name, a in arrays.items()}
        epoch, first = epoch + 1, 0


def num_eval_batches(num_examples: int, global_batch_size: int) -> int:
    """How many batches ``eval_iterator`` yields: ceil(num_examples / global_batch_size)."""
    return math.ceil(num_examples / _check_batch_size(global_batch_size))


def eval_iterator(arrays: Mapping[str, np.ndarray], global_batch_size: int,
                  num_examples: Optional[int] = None) -> Iterator[Batch]:
    """Each example exactly once, in stored order, in full-size padded batches.

    Args:
      arrays: name -> array [N, ...], all with the same N. Must not contain ``"weights"``.
      global_batch_size: examples per batch, summed over DDP ranks.
      num_examples: evaluate only the first ``num_examples`` (e.g. the train-eval subset);
        default all N.

    Yields:
      name -> array [global_batch_size, ...] plus ``"weights"``: float32 [global_batch_size],
      1.0 for real examples and 0.0 for the zero padding of the last batch.
    """
    n = _num_examples(arrays)
    batch_size = _check_batch_size(global_batch_size)
    if "weights" in arrays:
        raise ValueError("arrays already has a 'weights' entry; eval_iterator adds its own")
    if num_examples is not None:
        if not 0 <= num_examples <= n:
            raise ValueError(f"num_examples={num_examples} is outside [0, {n}]")
        n = int(num_examples)
    return _eval_batches(dict(arrays), n, batch_size)


def _eval_batches(arrays, n, batch_size):
    for lo in range(0, n, batch_size):
        hi = min(lo + batch_size, n)
        batch = {}
        for name, a in arrays.items():
            out = np.zeros((batch_size,) + a.shape[1:], dtype=a.dtype)
            out[:hi - lo] = a[lo:hi]
            batch[name] = out
        weights = np.zeros((batch_size,), dtype=np.float32)
        weights[:hi - lo] = 1.0
        batch["weights"] = weights
        yield batch


def shard_batch(batch: Mapping[str, Any], rank: int, world_size: int) -> Dict[str, Any]:
    """Rank ``rank``'s contiguous slice of a global batch: rows [rank*B/W, (rank+1)*B/W).

    Works for numpy arrays and torch tensors alike (views, no copy). Every value must have the
    same leading size B, divisible by ``world_size``, so all ranks see equal batches and the
    per-rank results combine exactly into the global one.
    """
    if int(world_size) < 1 or not 0 <= int(rank) < int(world_size):
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    if not batch:
        raise ValueError("batch is empty")
    sizes = {name: (v.shape[0] if len(v.shape) else None) for name, v in batch.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise ValueError(f"batch values must share their leading size, got {sizes}")
    global_size = next(iter(sizes.values()))
    if global_size % world_size:
        raise ValueError(f"global batch size {global_size} is not divisible by world_size "
                         f"{world_size}; choose a batch size that is a multiple of the number "
                         f"of processes")
    per_rank = global_size // world_size
    lo = rank * per_rank
    return {name: v[lo:lo + per_rank] for name, v in batch.items()}
