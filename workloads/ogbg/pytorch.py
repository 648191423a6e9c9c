"""ogbg in PyTorch: the GNN of ``models`` on packed, padded graph batches.

A batch (train and eval) is ``{"inputs": GraphBatch, "targets": float32 [Gc, 128] (0 where
missing), "weights": float32 [Gc, 128]}``: ``weights`` is 1 for a measured label of a real
graph and 0 otherwise (missing labels, padding graphs), AlgoPerf's ``batch['weights']``; so a
baseline's ``loss_fn(targets, logits, weights)`` averages over measured labels only.

Training: a global batch is ``get_batch_size`` graphs, drawn as ``iterators.batch_iterator``
draws examples (reshuffled per epoch from the seed, resumable by batch index); under DDP each
process packs its contiguous slice of the graph ids.

Evaluation: mean average precision is not a sum over batches, so the eval gathers every real
graph's logits, labels and masks of a split (across DDP processes with ``all_gather``; every
process packs the same number of graph slots per batch), then scores once. Each real graph is
counted exactly once (checked against the split size).
"""
from typing import Any, Dict, Iterator, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from algoperf import eval_guard, pytorch_utils, random_utils, spec
from workloads.datasets import iterators
from workloads.datasets import ogbg_molpcba as data
from workloads.ogbg import definition, metrics
from workloads.ogbg.models import GNN, GraphBatch
from workloads.pytorch_workload import PyTorchWorkload, TrainQueue


def to_batch(packed: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """``pack_graphs`` output -> the model's batch dict (CPU tensors, no copies)."""
    return {"inputs": GraphBatch.from_numpy(packed),
            "targets": torch.from_numpy(packed["labels"]),
            "weights": torch.from_numpy(packed["label_mask"])}


class OgbgWorkload(PyTorchWorkload, definition.OgbgDefinition):
    output_param_names = ("decoder.weight", "decoder.bias")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._splits: Dict[tuple, data.GraphSplit] = eval_guard.HeldOutCache()

    # --- model -----------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        return GNN(num_outputs=self.num_outputs, latent_dim=self.latent_dim,
                   hidden_dims=self.hidden_dims,
                   num_message_passing_steps=self.num_message_passing_steps,
                   activation=self.activation)

    def model_fn(self, params, augmented_and_preprocessed_input_batch, model_state, mode, rng,
                 update_batch_norm, dropout_rate: Optional[float] = None):
        # AlgoPerf's ogbg default when the submission passes no dropout rate.
        rate = self.default_dropout_rate if dropout_rate is None else dropout_rate
        return super().model_fn(params, augmented_and_preprocessed_input_batch, model_state,
                                mode, rng, update_batch_norm, dropout_rate=rate)

    def forward(self, model: nn.Module, inputs: GraphBatch, dropout_rate: float):
        return model(inputs, dropout_rate)

    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing: float = 0.0):
        return metrics.masked_bce(label_batch, logits_batch, mask_batch, label_smoothing)

    def kfac_segment_layouts(self, batch: Dict[str, Any]):
        """Per-row graph ids and real-row masks of the node, edge and graph tensors, for
        K-FAC's per-graph factors: ``([(ids [Nc], mask), (ids [Ec], mask), (ids [Gc],
        mask)], Gc)`` (the three row counts always differ)."""
        g: GraphBatch = batch["inputs"]
        graph_ids = torch.arange(g.num_graphs, device=g.graph_mask.device)
        return ([(g.node_graph, g.node_mask > 0), (g.edge_graph, g.edge_mask > 0),
                 (graph_ids, g.graph_mask > 0)], g.num_graphs)

    # --- data ------------------------------------------------------------------------------
    def _read(self, data_dir: str, split: str) -> data.GraphSplit:
        return data.load_molpcba(data_dir, split)

    def load_arrays(self, data_dir: str, split: str) -> data.GraphSplit:
        """The stored split ('eval_train' reads 'train'); kept once per (folder, split)."""
        stored = "train" if split == "eval_train" else split
        key = (str(data_dir), stored)
        if key not in self._splits:
            self._splits[key] = self._read(data_dir, stored)
        return self._splits[key]

    def _build_input_queue(self, data_rng: spec.RandomState, split: str, data_dir: str,
                           global_batch_size: int, cache: Optional[bool] = None,
                           repeat_final_dataset: Optional[bool] = None,
                           num_batches: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        del cache, repeat_final_dataset
        return _GraphTrainQueue(self, self.load_arrays(data_dir, split), global_batch_size,
                                random_utils.to_int(data_rng), num_batches)

    # --- evaluation ------------------------------------------------------------------------
    def _eval_model_on_split(self, split: str, num_examples: int, global_batch_size: int,
                             params: nn.Module, model_state, rng, data_dir: str,
                             global_step: int = 0) -> Dict[str, float]:
        del rng, global_step
        graphs = self.load_arrays(data_dir, split)
        world = pytorch_utils.world_size()
        # No bigger than the split (rounded to the processes): a small split is one batch
        # without thousands of padding graphs.
        batch = min(global_batch_size, -(-num_examples // world) * world)
        capacity = data.capacity_for(data.SizeStats.of(graphs), batch // world)
        parts = {"logits": [], "labels": [], "mask": [], "graph": []}
        ids = {"ids": np.arange(len(graphs))}
        for chunk in iterators.eval_iterator(ids, batch, num_examples=num_examples):
            chunk = iterators.shard_batch(chunk, self._rank, world)
            real = chunk["ids"][chunk["weights"] > 0]
            packed = data.pack_graphs(graphs, real, capacity)
            inputs = self._to_device(to_batch(packed))
            logits, _ = self.model_fn(params, inputs, model_state, spec.ForwardPassMode.EVAL,
                                      None, update_batch_norm=False)
            rows = {"logits": logits.float(), "labels": inputs["targets"],
                    "mask": inputs["weights"], "graph": inputs["inputs"].graph_mask}
            for name, value in rows.items():
                parts[name].extend(_all_gather(value) if self._use_ddp else [value])
        gathered = {k: torch.cat(v).cpu() for k, v in parts.items()}
        real = gathered["graph"] > 0
        if int(real.sum()) != num_examples:
            raise RuntimeError(f"{self.name} {split}: evaluated {int(real.sum())} graphs, "
                               f"expected {num_examples}")
        logits, labels, mask = (gathered[k][real] for k in ("logits", "labels", "mask"))
        loss = self.loss_fn(labels, logits, mask)
        labels_nan = torch.where(mask > 0, labels, torch.full_like(labels, float("nan")))
        return {"mean_average_precision": metrics.mean_average_precision(
                    labels_nan.numpy(), logits.numpy()),
                "loss": float(loss["summed"] / loss["n_valid_examples"].clamp(min=1))}


def _all_gather(x: torch.Tensor) -> list:
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return out


class _GraphTrainQueue(TrainQueue):
    """Infinite reshuffled train batches of packed graphs; ``skip(n)`` jumps ahead exactly."""

    def __init__(self, workload: OgbgWorkload, graphs: data.GraphSplit, global_batch_size: int,
                 seed: int, num_batches: Optional[int]):
        super().__init__(num_batches)
        self._workload, self._graphs = workload, graphs
        self._global_batch_size, self._seed = global_batch_size, seed
        self._world = pytorch_utils.world_size()
        self._capacity = data.capacity_for(data.SizeStats.of(graphs),
                                           global_batch_size // self._world)
        self._start = 0
        self.skip(0)

    def skip(self, count: int) -> None:
        self._start += count
        self._ids = iterators.batch_iterator({"ids": np.arange(len(self._graphs))},
                                             self._global_batch_size, self._seed,
                                             start_batch=self._start)

    def _next_batch(self) -> Dict[str, Any]:
        ids = iterators.shard_batch(next(self._ids), self._workload._rank, self._world)["ids"]
        packed = data.pack_graphs(self._graphs, ids, self._capacity)
        return self._workload._to_device(to_batch(packed))


class OgbgGeluWorkload(OgbgWorkload, definition.OgbgGeluDefinition):
    pass


class OgbgSiluWorkload(OgbgWorkload, definition.OgbgSiluDefinition):
    pass


class OgbgModelSizeWorkload(OgbgWorkload, definition.OgbgModelSizeDefinition):
    pass


class OgbgTinyWorkload(OgbgWorkload, definition.OgbgTinyDefinition):
    def _read(self, data_dir: str, split: str) -> data.GraphSplit:
        return data.load_molpcba_tiny(data_dir, split)
