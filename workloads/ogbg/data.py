"""ogbg's data side (numpy): graphs packed into padded batches, and the mAP eval.

A batch (train and eval) is ``ogbg_molpcba.pack_graphs``' dict of numpy arrays: node and edge
features, senders / receivers, per-row graph ids, node / edge / graph masks, ``labels`` float32
[Gc, 128] (0 where missing) and ``label_mask`` [Gc, 128] (1 for a measured label of a real
graph). Each framework turns it into its graph type (``GraphBatch``, ``jraph.GraphsTuple``).

Training: a global batch is ``get_batch_size`` graphs, drawn as ``iterators.batch_iterator``
draws examples (reshuffled per epoch from the seed, resumable by batch index); each process
packs its contiguous slice of the graph ids. A backend with ``graph_batch_shards`` = S (JAX:
one piece per device) gets that slice as S packed pieces stacked along a leading axis
(``pack_graph_pieces``), so that no graph spans two devices.

Evaluation: mean average precision is not a sum over batches, so the eval gathers every real
graph's logits, labels and masks of a split (across processes, through the backend; every
process packs the same number of graph slots per batch), then scores once. Each real graph is
counted exactly once (checked against the split size).
"""
from typing import Dict, Optional

import numpy as np

from algoperf import eval_guard
from workloads.data_layer import DataLayer
from workloads.datasets import iterators
from workloads.datasets import ogbg_molpcba as data
from workloads.ogbg import metrics


def pack(graphs: data.GraphSplit, stats: data.SizeStats, ids: np.ndarray, num_graphs: int,
         shards: Optional[int]) -> Dict[str, np.ndarray]:
    """``ids`` packed for up to ``num_graphs`` graphs: one packed graph, or ``shards`` stacked
    pieces of about ``num_graphs / shards`` graphs each (``stats``: the split's sizes)."""
    if not shards:
        return data.pack_graphs(graphs, ids, data.capacity_for(stats, num_graphs))
    return data.pack_graph_pieces(graphs, np.array_split(ids, shards),
                                  data.capacity_for(stats, -(-num_graphs // shards)))


class GraphSource:
    """This process's packed train batches; ``skip(n)`` jumps ahead exactly."""

    def __init__(self, graphs: data.GraphSplit, global_batch_size: int, seed: int, rank: int,
                 world: int, shards: Optional[int]):
        self._graphs, self._global_batch_size, self._seed = graphs, global_batch_size, seed
        self._rank, self._world, self._shards = rank, world, shards
        self._stats = data.SizeStats.of(graphs)
        self._start = 0
        self.skip(0)

    def skip(self, count: int) -> None:
        self._start += count
        self._ids = iterators.batch_iterator({"ids": np.arange(len(self._graphs))},
                                             self._global_batch_size, self._seed,
                                             start_batch=self._start)

    def next(self):
        ids = iterators.shard_batch(next(self._ids), self._rank, self._world)["ids"]
        return pack(self._graphs, self._stats, ids, self._global_batch_size // self._world,
                    self._shards), None


class OgbgData(DataLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._splits: Dict[tuple, data.GraphSplit] = eval_guard.HeldOutCache()

    def load_arrays(self, data_dir: str, split: str) -> data.GraphSplit:
        """The stored split ('eval_train' reads 'train'); kept once per (folder, split)."""
        stored = "train" if split == "eval_train" else split
        key = (str(data_dir), stored)
        if key not in self._splits:
            self._splits[key] = (
                data.load_molpcba_tiny(data_dir, stored) if self.dataset == data.TINY_NAME
                else data.load_molpcba(data_dir, stored, check_sizes=self.check_sizes))
        return self._splits[key]

    def train_source(self, graphs: data.GraphSplit, global_batch_size: int, seed: int):
        return GraphSource(graphs, global_batch_size, seed, self._backend.rank,
                           self._backend.world_size, self._backend.graph_batch_shards)

    def _eval_model_on_split(self, split: str, num_examples: int, global_batch_size: int,
                             params, model_state, rng, data_dir: str,
                             global_step: int = 0) -> Dict[str, float]:
        del rng, global_step
        params, model_state = self._eval_variables(params, model_state)
        graphs = self.load_arrays(data_dir, split)
        rank, world = self._backend.rank, self._backend.world_size
        # No bigger than the split (rounded to the processes): a small split is one batch
        # without thousands of padding graphs.
        batch = min(global_batch_size, -(-num_examples // world) * world)
        stats = data.SizeStats.of(graphs)
        parts = {"logits": [], "labels": [], "mask": [], "graph": []}
        ids = {"ids": np.arange(len(graphs))}
        for chunk in iterators.eval_iterator(ids, batch, num_examples=num_examples):
            chunk = iterators.shard_batch(chunk, rank, world)
            real = chunk["ids"][chunk["weights"] > 0]
            packed = pack(graphs, stats, real, batch // world, self._backend.graph_batch_shards)
            logits = self._eval_logits(params, model_state,
                                       self._model_batch(packed, False, None))
            tasks = logits.shape[-1]  # stacked pieces: rows of every piece, in order
            rows = {"logits": logits.reshape(-1, tasks).astype(np.float32),
                    "labels": packed["labels"].reshape(-1, tasks),
                    "mask": packed["label_mask"].reshape(-1, tasks),
                    "graph": packed["graph_mask"].reshape(-1).astype(np.float32)}
            for name, value in rows.items():
                parts[name].extend(self._backend.all_gather(value))
        gathered = {k: np.concatenate(v) for k, v in parts.items()}
        real = gathered["graph"] > 0
        if int(real.sum()) != num_examples:
            raise RuntimeError(f"{self.name} {split}: evaluated {int(real.sum())} graphs, "
                               f"expected {num_examples}")
        logits, labels, mask = (gathered[k][real] for k in ("logits", "labels", "mask"))
        labels_nan = np.where(mask > 0, labels, np.nan)
        return {"mean_average_precision": metrics.mean_average_precision(labels_nan, logits),
                "loss": metrics.masked_bce_mean(labels, logits, mask)}
