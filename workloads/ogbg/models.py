"""AlgoPerf's graph network for ogbg-molpcba, in PyTorch, on packed padded batches.

Model (AlgoPerf's ``GNN``, a jraph ``GraphNetwork`` stack; Battaglia et al. 2018)::

    h_v = W_n x_v + b_n    [N, L]     x_v: 9 atom features (as floats)
    h_e = W_e x_e + b_e    [E, L]     x_e: 3 bond features
    u_g = 0                [G, O]     the global vector starts as zeros of the output size
    repeat S times (each step its own three MLPs):
        h_e <- MLP_e([h_e, h_{s(e)}, h_{r(e)}, u_{g(e)}])                     edges first
        h_v <- MLP_v([h_v, sum_{e: s(e)=v} h_e, sum_{e: r(e)=v} h_e, u_{g(v)}])  then nodes
        u_g <- MLP_u([sum_{v in g} h_v, sum_{e in g} h_e, u_g])                 then globals
    logits_g = W_o u_g + b_o   [G, O]

MLP(hidden dims (H_1..H_k)) = k x (Linear -> LayerNorm(eps 1e-6) -> activation -> dropout).
Config (AlgoPerf): latent L = 256, hidden (256,), S = 5, O = 128 outputs, ReLU, dropout 0.1;
``ogbg_model_size``: L = 128, hidden (256, 256), S = 3.

AlgoPerf's model has **no residual connections** (jraph's GraphNetwork returns the MLP outputs);
this one matches it by default. ``residual=True`` adds ``h <- h + MLP(...)`` wherever the
widths agree (every step after the first when L = H_k), for experiments only: the
workloads' targets are AlgoPerf's, set without.

Layers are plain ``nn.Linear`` on row-stacked tensors ([N, D] for nodes, [E, D] for edges,
[G, D] for globals), so K-FAC sees one weight-sharing dimension per layer; the per-row graph
ids and masks that K-FAC-reduce needs are in ``GraphBatch``.

Parameter count (``num_parameters``, closed form, tested): AlgoPerf's config 3,554,176;
``ogbg_model_size`` 2,571,648.
"""
import dataclasses
import functools
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# GELU is the tanh approximation, as in AlgoPerf's models (Flax's nn.gelu default and its
# PyTorch port's approximate='tanh'): ogbg_gelu's target was set with it.
ACTIVATIONS = {"relu": nn.ReLU, "gelu": functools.partial(nn.GELU, approximate="tanh"),
               "silu": nn.SiLU}


@dataclasses.dataclass
class GraphBatch:
    """b graphs packed as one disjoint graph, padded to Gc graph / Nc node / Ec edge rows.

    node_feat  [Nc, 9]  uint8 OGB atom features (the model casts them to float)
    edge_feat  [Ec, 3]  uint8 OGB bond features (each bond twice: both directions)
    senders, receivers  [Ec] int64 node rows of each directed edge
    node_graph [Nc], edge_graph [Ec]  int64 graph slot of each row (segment ids; padding rows
                                      point to a padding slot, never a real graph)
    node_mask [Nc], edge_mask [Ec], graph_mask [Gc]  float32: 1 real, 0 padding
    """
    node_feat: torch.Tensor
    edge_feat: torch.Tensor
    senders: torch.Tensor
    receivers: torch.Tensor
    node_graph: torch.Tensor
    edge_graph: torch.Tensor
    node_mask: torch.Tensor
    edge_mask: torch.Tensor
    graph_mask: torch.Tensor

    @property
    def num_graphs(self) -> int:
        return self.graph_mask.shape[0]

    def to(self, device, non_blocking: bool = False) -> "GraphBatch":
        return GraphBatch(**{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                             for f in dataclasses.fields(self)})

    @classmethod
    def from_numpy(cls, packed) -> "GraphBatch":
        """From ``ogbg_molpcba.pack_graphs`` output (shares memory with it)."""
        return cls(**{f.name: torch.from_numpy(packed[f.name]) for f in dataclasses.fields(cls)})


def segment_sum(x: torch.Tensor, segment_ids: torch.Tensor, num_segments: int) -> torch.Tensor:
    """out[s] = sum of rows x[i] with segment_ids[i] == s: [R, D] -> [num_segments, D]."""
    out = x.new_zeros((num_segments, x.shape[1]))
    return out.index_add_(0, segment_ids, x)


class MLP(nn.Module):
    """k x (Linear -> LayerNorm -> activation -> dropout): [R, in_dim] -> [R, dims[-1]]."""

    def __init__(self, in_dim: int, dims: Sequence[int], activation: str):
        super().__init__()
        self.linears, self.norms = nn.ModuleList(), nn.ModuleList()
        for width in dims:
            self.linears.append(nn.Linear(in_dim, width))
            self.norms.append(nn.LayerNorm(width, eps=1e-6))
            in_dim = width
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor, dropout_rate: float = 0.0) -> torch.Tensor:
        for linear, norm in zip(self.linears, self.norms):
            x = F.dropout(self.activation(norm(linear(x))), dropout_rate, self.training)
        return x


class GraphNetworkStep(nn.Module):
    """One message-passing step: edges, then nodes, then globals (module docstring)."""

    def __init__(self, node_dim: int, edge_dim: int, global_dim: int, hidden: Sequence[int],
                 activation: str, residual: bool):
        super().__init__()
        out = hidden[-1]
        self.edge_mlp = MLP(edge_dim + 2 * node_dim + global_dim, hidden, activation)
        self.node_mlp = MLP(node_dim + 2 * out + global_dim, hidden, activation)
        self.global_mlp = MLP(2 * out + global_dim, hidden, activation)
        self.residual = residual

    def _add(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        return old + new if self.residual and old.shape == new.shape else new

    def forward(self, nodes, edges, globals_, g: GraphBatch, dropout_rate: float):
        n, num_graphs = nodes.shape[0], globals_.shape[0]
        new_edges = self.edge_mlp(torch.cat(
            [edges, nodes[g.senders], nodes[g.receivers], globals_[g.edge_graph]], dim=-1),
            dropout_rate)
        edges = self._add(edges, new_edges)
        sent = segment_sum(edges, g.senders, n)
        received = segment_sum(edges, g.receivers, n)
        nodes = self._add(nodes, self.node_mlp(
            torch.cat([nodes, sent, received, globals_[g.node_graph]], dim=-1), dropout_rate))
        node_sums = segment_sum(nodes, g.node_graph, num_graphs)
        edge_sums = segment_sum(edges, g.edge_graph, num_graphs)
        globals_ = self._add(globals_, self.global_mlp(
            torch.cat([node_sums, edge_sums, globals_], dim=-1), dropout_rate))
        return nodes, edges, globals_


class GNN(nn.Module):
    """GraphBatch -> logits [Gc, num_outputs] (rows of padding graphs are meaningless)."""

    def __init__(self, num_outputs: int = 128, latent_dim: int = 256,
                 hidden_dims: Sequence[int] = (256,), num_message_passing_steps: int = 5,
                 activation: str = "relu", node_features: int = 9, edge_features: int = 3,
                 residual: bool = False):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of "
                             f"{sorted(ACTIVATIONS)}")
        if not hidden_dims or num_message_passing_steps < 1:
            raise ValueError("need at least one hidden layer and one message-passing step")
        self.num_outputs = num_outputs
        self.node_embedder = nn.Linear(node_features, latent_dim)
        self.edge_embedder = nn.Linear(edge_features, latent_dim)
        h = hidden_dims[-1]
        self.steps = nn.ModuleList(
            GraphNetworkStep(latent_dim if i == 0 else h, latent_dim if i == 0 else h,
                             num_outputs if i == 0 else h, hidden_dims, activation, residual)
            for i in range(num_message_passing_steps))
        self.decoder = nn.Linear(h, num_outputs)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """LeCun-normal weights (truncated at 2 sd, as Flax's Dense default that AlgoPerf's
        JAX model uses and its PyTorch port copies), zero biases, LayerNorm at identity."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                std = math.sqrt(1.0 / m.in_features) / 0.87962566103423978
                nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
                nn.init.zeros_(m.bias)

    def forward(self, g: GraphBatch, dropout_rate: float = 0.0) -> torch.Tensor:
        dtype = self.node_embedder.weight.dtype
        nodes = self.node_embedder(g.node_feat.to(dtype))
        edges = self.edge_embedder(g.edge_feat.to(dtype))
        globals_ = nodes.new_zeros((g.num_graphs, self.num_outputs))
        for step in self.steps:
            nodes, edges, globals_ = step(nodes, edges, globals_, g, dropout_rate)
        return self.decoder(globals_)


def num_parameters(num_outputs: int = 128, latent_dim: int = 256,
                   hidden_dims: Sequence[int] = (256,), num_message_passing_steps: int = 5,
                   node_features: int = 9, edge_features: int = 3) -> int:
    """Closed-form parameter count of ``GNN`` (weights + biases + LayerNorm scale/offset)."""
    def mlp(in_dim):
        total = 0
        for width in hidden_dims:
            total += in_dim * width + width + 2 * width
            in_dim = width
        return total
    latent, h, out = latent_dim, hidden_dims[-1], num_outputs
    total = (node_features + 1) * latent + (edge_features + 1) * latent + (h + 1) * out
    for i in range(num_message_passing_steps):
        d, u = (latent, out) if i == 0 else (h, h)
        total += mlp(3 * d + u) + mlp(d + 2 * h + u) + mlp(2 * h + u)
    return total
