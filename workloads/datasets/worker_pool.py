"""Items made in worker processes, handed back in order, with a bounded prefetch.

``OrderedPool(make, first, stop, num_workers)`` yields ``make(first)``, ``make(first + 1)``,
... ``make(stop - 1)`` (forever if ``stop`` is None). ``make(k, out)`` fills ``out[name]``, one
preallocated array per name of ``make.buffers`` (the big arrays: decoded images), and returns
the small parts (labels, counts) as a dict; the pool returns both together.

Workers are forked, as torch's DataLoader does on Linux, after the buffers are allocated in
shared memory (anonymous ``mmap``): a worker writes item k's big arrays straight into slot
k % W of W = ``num_workers * prefetch`` slots, and only the small dict is pickled back. Slot s
is refilled only after the item in it was copied out, so at most W items are in flight.
``num_workers=0`` makes every item in this process. No framework is involved.
"""
import mmap
import multiprocessing
from collections import deque
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

# make(k, out) -> small dict; make.buffers = {name: (shape, dtype)} of each item's big arrays
Make = Callable[[int, Dict[str, np.ndarray]], Dict[str, Any]]

_MAKERS: Dict[int, Tuple[Make, Dict[str, np.ndarray]]] = {}  # token -> (make, slot arrays)


def _shared_slots(buffers: Dict[str, Tuple[tuple, Any]], count: int) -> Dict[str, np.ndarray]:
    """name -> array [count, *shape] in anonymous shared memory (inherited by forks)."""
    slots = {}
    for name, (shape, dtype) in buffers.items():
        dtype = np.dtype(dtype)
        size = max(1, int(np.prod(shape)) * dtype.itemsize * count)
        memory = mmap.mmap(-1, size)  # MAP_SHARED | MAP_ANONYMOUS
        slots[name] = np.frombuffer(memory, dtype=dtype,
                                    count=int(np.prod(shape)) * count).reshape(count, *shape)
    return slots


def _run(token: int, k: int, slot: int) -> Dict[str, Any]:
    make, slots = _MAKERS[token]
    return make(k, {name: array[slot] for name, array in slots.items()})


class OrderedPool:
    def __init__(self, make: Make, first: int, stop: Optional[int], num_workers: int,
                 prefetch: int = 4):
        self._make, self._next, self._stop = make, int(first), stop
        self._workers = int(num_workers)
        self._pool = None
        if self._workers:
            self._window = self._workers * max(1, prefetch)
            self._slots = _shared_slots(make.buffers, self._window)
            self._token = id(self)
            _MAKERS[self._token] = (make, self._slots)
            self._pool = multiprocessing.get_context("fork").Pool(self._workers)
            self._pending = deque()
            self._submitted = self._next
            for _ in range(self._window):
                self._submit()

    def _submit(self) -> None:
        k = self._submitted
        if self._stop is not None and k >= self._stop:
            return
        slot = k % self._window
        self._pending.append((k, slot, self._pool.apply_async(_run, (self._token, k, slot))))
        self._submitted += 1

    def __iter__(self):
        return self

    def __next__(self) -> Dict[str, Any]:
        if self._stop is not None and self._next >= self._stop:
            raise StopIteration
        if self._pool is None:
            out = {name: np.zeros(shape, dtype) for name, (shape, dtype) in
                   self._make.buffers.items()}
            item = {**self._make(self._next, out), **out}
        else:
            k, slot, result = self._pending.popleft()
            item = result.get()
            item.update({name: array[slot].copy() for name, array in self._slots.items()})
            self._submit()  # the slot is free again
        self._next += 1
        return item

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
            _MAKERS.pop(self._token, None)

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to clean up
            pass
