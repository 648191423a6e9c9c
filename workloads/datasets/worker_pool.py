"""Items made in worker processes, handed back in order, with a bounded prefetch.

``OrderedPool(make, first, stop, num_workers)`` yields ``make(first)``, ``make(first + 1)``,
... ``make(stop - 1)`` (forever if ``stop`` is None). ``make(k, out)`` fills ``out[name]``, one
preallocated array per name of ``make.buffers`` (the big arrays: decoded images), and returns
the small parts (labels, counts) as a dict; the pool returns both together.

The big arrays travel through shared memory: W = ``num_workers * prefetch`` slots per buffer,
allocated by this process; a worker writes item k straight into slot k % W and only the small
dict is pickled back. Slot s is refilled only after the item in it was copied out, so at most
W items are in flight. Workers are forked, as torch's DataLoader does on Linux, except in a
process that has imported JAX, whose threads make a fork unsafe: there they are spawned
(which, as for any spawned process, needs the main script's code behind an
``if __name__ == "__main__":`` guard). Each gets ``make`` once, at start; a worker that dies is
an error here (``BrokenProcessPool``), not a silent respawn. ``num_workers=0`` makes every
item in this process. No framework is involved.
"""
import multiprocessing
import os
import sys
import weakref
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import shared_memory
from typing import Any, Callable, Dict, Optional

import numpy as np

# make(k, out) -> small dict; make.buffers = {name: (shape, dtype)} of each item's big arrays
Make = Callable[[int, Dict[str, np.ndarray]], Dict[str, Any]]

_worker: Dict[str, Any] = {}  # in a worker: its make and its views of the slots


def _slots(blocks: Dict[str, shared_memory.SharedMemory], buffers, window: int):
    return {name: np.ndarray((window,) + tuple(shape), dtype=np.dtype(dtype),
                             buffer=blocks[name].buf)
            for name, (shape, dtype) in buffers.items()}


def _start_worker(make: Make, names: Dict[str, str], window: int) -> None:
    # Attaching registers a block with the resource tracker again (Python < 3.13); the
    # tracker is the parent's (forked and spawned workers share it) and keeps a set, so the
    # owner's unlink is still the one that frees it.
    blocks = {buffer: shared_memory.SharedMemory(name=name) for buffer, name in names.items()}
    _worker.update(make=make, blocks=blocks, slots=_slots(blocks, make.buffers, window))


def _run(k: int, slot: int) -> Dict[str, Any]:
    return _worker["make"](k, {name: array[slot] for name, array in _worker["slots"].items()})


def _start_method() -> Optional[str]:
    """'fork', 'spawn', or None when no worker could start: spawned workers import the
    parent's ``__main__`` from its file, and code piped to ``python -`` has none."""
    if "jax" not in sys.modules and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return "spawn" if main_file is None or os.path.isfile(main_file) else None


class OrderedPool:
    def __init__(self, make: Make, first: int, stop: Optional[int], num_workers: int,
                 prefetch: int = 4):
        self._make, self._next, self._stop = make, int(first), stop
        self._pool = None
        method = _start_method() if num_workers else None
        if method is None:
            num_workers = 0  # decode in this process: slower, but it works
        if num_workers:
            self._window = int(num_workers) * max(1, prefetch)
            self._blocks = {
                name: shared_memory.SharedMemory(
                    create=True, size=max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize
                                          * self._window))
                for name, (shape, dtype) in make.buffers.items()}
            self._slots = _slots(self._blocks, make.buffers, self._window)
            self._pool = ProcessPoolExecutor(
                int(num_workers), mp_context=multiprocessing.get_context(method),
                initializer=_start_worker,
                initargs=(make, {n: b.name for n, b in self._blocks.items()}, self._window))
            self._finalizer = weakref.finalize(self, _shut_down, self._pool, self._blocks)
            self._pending: deque = deque()
            self._submitted = self._next
            for _ in range(self._window):
                self._submit()

    def _submit(self) -> None:
        k = self._submitted
        if self._stop is not None and k >= self._stop:
            return
        slot = k % self._window
        self._pending.append((slot, self._pool.submit(_run, k, slot)))
        self._submitted += 1

    def __iter__(self):
        return self

    def __next__(self) -> Dict[str, Any]:
        if self._stop is not None and self._next >= self._stop:
            self.close()
            raise StopIteration
        if self._pool is None:
            out = {name: np.zeros(shape, dtype)
                   for name, (shape, dtype) in self._make.buffers.items()}
            item = {**self._make(self._next, out), **out}
        else:
            slot, result = self._pending.popleft()
            item = result.result()
            item.update({name: array[slot].copy() for name, array in self._slots.items()})
            self._submit()  # the slot is free again
        self._next += 1
        return item

    def close(self) -> None:
        if self._pool is not None:
            self._pool, self._slots = None, {}
            self._finalizer()


def _shut_down(pool: ProcessPoolExecutor, blocks: Dict[str, shared_memory.SharedMemory]):
    """Stop the workers (prefetched items are dropped) and free the shared memory."""
    pool.shutdown(wait=True, cancel_futures=True)
    for block in blocks.values():
        block.close()
        block.unlink()
