"""ogbg in PyTorch: the GNN of ``models`` on packed graphs (``GraphBatch``)."""
from typing import Any, Dict, Optional

import numpy as np
import torch
from torch import nn

from workloads import pytorch_losses
from workloads.ogbg.models import GNN, GraphBatch
from workloads.pytorch_workload import PyTorchModel


def to_batch(packed: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """``pack_graphs`` output -> the model's batch dict: {'inputs': GraphBatch, 'targets':
    float32 [Gc, 128] (0 where missing), 'weights': float32 [Gc, 128]} (CPU tensors sharing
    the arrays' memory). ``weights`` is 1 for a measured label of a real graph, AlgoPerf's
    ``batch['weights']``: a baseline's ``loss_fn(targets, logits, weights)`` averages over
    measured labels only."""
    return {"inputs": GraphBatch.from_numpy(packed),
            "targets": torch.from_numpy(packed["labels"]),
            "weights": torch.from_numpy(packed["label_mask"])}


class OgbgPyTorch(PyTorchModel):
    output_param_names = ("decoder.weight", "decoder.bias")

    def build_model(self) -> nn.Module:
        return GNN(num_outputs=self.num_outputs, latent_dim=self.latent_dim,
                   hidden_dims=self.hidden_dims,
                   num_message_passing_steps=self.num_message_passing_steps,
                   activation=self.activation)

    def to_model_inputs(self, batch: Dict[str, np.ndarray]) -> Dict[str, Any]:
        return to_batch(batch)

    def model_fn(self, params, augmented_and_preprocessed_input_batch, model_state, mode, rng,
                 update_batch_norm, dropout_rate: Optional[float] = None):
        # AlgoPerf's ogbg default when the submission passes no dropout rate.
        rate = self.default_dropout_rate if dropout_rate is None else dropout_rate
        return super().model_fn(params, augmented_and_preprocessed_input_batch, model_state,
                                mode, rng, update_batch_norm, dropout_rate=rate)

    def forward(self, model: nn.Module, inputs: GraphBatch, dropout_rate: float):
        return model(inputs, dropout_rate)

    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing: float = 0.0):
        return pytorch_losses.masked_bce(label_batch, logits_batch, mask_batch, label_smoothing)

    def kfac_segment_layouts(self, batch: Dict[str, Any]):
        """Per-row graph ids and real-row masks of the node, edge and graph tensors, for
        K-FAC's per-graph factors: ``([(ids [Nc], mask), (ids [Ec], mask), (ids [Gc],
        mask)], Gc)`` (the three row counts always differ)."""
        g: GraphBatch = batch["inputs"]
        graph_ids = torch.arange(g.num_graphs, device=g.graph_mask.device)
        return ([(g.node_graph, g.node_mask > 0), (g.edge_graph, g.edge_mask > 0),
                 (graph_ids, g.graph_mask > 0)], g.num_graphs)
