"""AlgoPerf's graph network for ogbg-molpcba in Flax (linen), on ``jraph.GraphsTuple`` batches.

The same network as ``workloads.ogbg.models.GNN`` (PyTorch), with AlgoPerf's Flax module
structure, so its parameter tree is AlgoPerf's (``algoperf/workloads/ogbg/ogbg_jax/models.py``)::

    h_v = W_n x_v + b_n    [N, L]     'node_embedding'    x_v: 9 atom features (as floats)
    h_e = W_e x_e + b_e    [E, L]     'edge_embedding'    x_e: 3 bond features
    u_g = 0                [G, O]     the global vector starts as zeros of the output size
    repeat S times (a jraph.GraphNetwork with its own three MLPs):
        h_e <- MLP_e([h_e, h_{s(e)}, h_{r(e)}, u_{g(e)}])                     edges first
        h_v <- MLP_v([h_v, sum_{e: s(e)=v} h_e, sum_{e: r(e)=v} h_e, u_{g(v)}])  then nodes
        u_g <- MLP_u([sum_{v in g} h_v, sum_{e in g} h_e, u_g])                 then globals
    logits_g = W_o u_g + b_o   [G, O]

MLP(hidden dims (H_1..H_k)) = k x (Dense -> LayerNorm(eps 1e-6) -> activation -> dropout); no
residual connections (jraph's GraphNetwork returns the MLP outputs, as our PyTorch model by
default). Config (AlgoPerf): L = 256, hidden (256,), S = 5, O = 128, ReLU; ``ogbg_model_size``:
L = 128, hidden (256, 256), S = 3.

Parameter names are Flax's automatic ones in the order the layers are created, as AlgoPerf's:
the two embeddings by name, then per step the edge, node and global MLP's ``Dense_i`` /
``LayerNorm_i`` (i counts up over all steps), then the decoder as the last ``Dense``. For
AlgoPerf's config: ``Dense_0..14`` / ``LayerNorm_0..14`` and the decoder ``Dense_15``.

GELU: ``"gelu"`` is the tanh approximation in both frameworks, as in AlgoPerf's models (Flax's
``nn.gelu`` default; AlgoPerf's PyTorch port passes ``approximate='tanh'``). The exact (erf)
GELU, ``"gelu_exact"``, differs from it by up to ~1e-3 per activation, far above float32
parity (the tests use it as a deliberate mismatch).

Padding (``graphs_tuple_from_packed``) follows ``ogbg_molpcba.pack_graphs`` and jraph's
``pad_with_graphs``: all padding nodes and edges belong to the first padding graph (padding
edges join a padding node to itself) and later padding graphs are empty, so segment sums over a
real node or graph never see padding. The forward pass applies no masks (as ours); padding
graphs' logits are meaningless and the loss and metric drop them with ``graph_mask`` /
``label_mask`` (``jraph.get_graph_padding_mask`` gives the same graph mask).
"""
import dataclasses
import functools
from typing import Any, Callable, Dict, Mapping, Sequence

import jax
import jax.numpy as jnp
import jraph
import numpy as np
from flax import linen as nn

from workloads.flax_dropout import Dropout

ACTIVATIONS: Dict[str, Callable] = {
    "relu": nn.relu,
    "gelu": functools.partial(nn.gelu, approximate=True),  # AlgoPerf's, and ours in PyTorch
    "silu": nn.silu,
    "gelu_exact": functools.partial(nn.gelu, approximate=False),
}
CONFIG_FIELDS = ("num_outputs", "latent_dim", "hidden_dims", "num_message_passing_steps",
                 "activation")


class GNN(nn.Module):
    """``jraph.GraphsTuple`` -> logits [G, num_outputs] (module docstring).

    Call ``GNN(...).apply({'params': p}, graph, train, dropout_rate, rngs={'dropout': key})``:
    ``graph.nodes`` [N, 9] and ``graph.edges`` [E, 3] float32, ``senders`` / ``receivers``
    int32 [E], ``n_node`` / ``n_edge`` int32 [G] (nodes and edges stored graph by graph, as
    jraph requires); ``graph.globals`` is ignored (replaced by zeros [G, num_outputs]).
    ``dropout_rate`` is a float or a traced scalar (``flax_dropout``); dropout is active only
    with ``train=True`` and then draws from the ``'dropout'`` rng.
    """
    num_outputs: int = 128
    latent_dim: int = 256
    hidden_dims: Sequence[int] = (256,)
    num_message_passing_steps: int = 5
    activation: str = "relu"
    layer_norm_epsilon: float = 1e-6  # Flax's and AlgoPerf's default; our PyTorch model's too

    @classmethod
    def from_config(cls, config: Any, **overrides) -> "GNN":
        """The GNN of a workload definition (``workloads.ogbg.definition``) or a mapping."""
        kwargs = {name: _field(config, name) for name in CONFIG_FIELDS}
        kwargs["hidden_dims"] = tuple(kwargs["hidden_dims"])
        return cls(**{**kwargs, **overrides})

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, train: bool,
                 dropout_rate: float = 0.0) -> jnp.ndarray:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; use one of "
                             f"{sorted(ACTIVATIONS)}")
        if not self.hidden_dims or self.num_message_passing_steps < 1:
            raise ValueError("need at least one hidden layer and one message-passing step")
        activation = ACTIVATIONS[self.activation]
        # One parameterless Dropout shared by every layer (AlgoPerf's); each use draws a fresh
        # key from the 'dropout' stream.
        dropout = Dropout(rate=dropout_rate, deterministic=not train)

        def mlp(*inputs: jnp.ndarray) -> jnp.ndarray:
            """[R, sum of input widths] -> [R, hidden_dims[-1]]; the Dense / LayerNorm names
            come from the order of creation inside this compact method."""
            x = jnp.concatenate(inputs, axis=-1)
            for width in self.hidden_dims:
                x = nn.Dense(width)(x)
                x = nn.LayerNorm(epsilon=self.layer_norm_epsilon)(x)
                x = dropout(activation(x))
            return x

        nodes = nn.Dense(self.latent_dim, name="node_embedding")(graph.nodes)    # [N, L]
        edges = nn.Dense(self.latent_dim, name="edge_embedding")(graph.edges)    # [E, L]
        globals_ = jnp.zeros((graph.n_node.shape[0], self.num_outputs), nodes.dtype)  # [G, O]
        graph = graph._replace(nodes=nodes, edges=edges, globals=globals_)
        for _ in range(self.num_message_passing_steps):
            # Sum aggregations (jraph's defaults): edges -> their sender and receiver nodes,
            # nodes and edges -> their graph.
            graph = jraph.GraphNetwork(update_edge_fn=mlp, update_node_fn=mlp,
                                       update_global_fn=mlp)(graph)
        return nn.Dense(self.num_outputs)(graph.globals)  # the decoder: the last Dense_i


def _field(config: Any, name: str) -> Any:
    """``config.name``; a mapping may leave a field out for GNN's default (as ``GNN(**kw)``)."""
    if isinstance(config, Mapping):
        return config.get(name, _DEFAULTS[name])
    return getattr(config, name)


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(GNN) if f.name in CONFIG_FIELDS}


def graphs_tuple_from_packed(packed: Mapping[str, np.ndarray]) -> jraph.GraphsTuple:
    """``ogbg_molpcba.pack_graphs`` output -> a padded ``jraph.GraphsTuple`` of numpy arrays.

    Shapes (Gc, Nc, Ec = the batch's capacities): nodes float32 [Nc, 9], edges float32
    [Ec, 3], senders / receivers int32 [Ec], n_node / n_edge int32 [Gc] (sum = Nc / Ec),
    globals float32 zeros [Gc, 128].

    jraph finds each row's graph by position (``repeat(arange(G), n_node)``), so rows must be
    stored graph by graph. Nodes already are; the edges are not (``pack_graphs`` puts a
    batch's bonds first and their reverses after), so they are reordered by graph (stable
    sort: a graph's bonds, then its reverse bonds). Edge order changes no sum. The padding is
    checked to stay inside padding graphs (no row of a padding graph in a real slot, no edge
    between graphs), so it cannot leak into a real graph's logits.
    """
    node_graph = np.asarray(packed["node_graph"])
    edge_graph = np.asarray(packed["edge_graph"])
    senders, receivers = np.asarray(packed["senders"]), np.asarray(packed["receivers"])
    graph_mask = np.asarray(packed["graph_mask"])
    num_graphs = len(graph_mask)
    if len(node_graph) and (node_graph.min() < 0 or node_graph.max() >= num_graphs):
        raise ValueError(f"node_graph outside the {num_graphs} graph slots")
    if np.any(np.diff(node_graph) < 0):
        raise ValueError("nodes must be stored graph by graph (node_graph non-decreasing)")
    if len(senders) and (min(senders.min(), receivers.min()) < 0
                         or max(senders.max(), receivers.max()) >= len(node_graph)):
        raise ValueError("an edge points outside the node rows")
    if np.any(node_graph[senders] != edge_graph) or np.any(node_graph[receivers] != edge_graph):
        raise ValueError("an edge joins nodes of another graph than its own (edge_graph)")
    real_slot = graph_mask > 0
    if (np.any(real_slot[node_graph[np.asarray(packed["node_mask"]) == 0]])
            or np.any(real_slot[edge_graph[np.asarray(packed["edge_mask"]) == 0]])):
        raise ValueError("a padding node or edge belongs to a real graph slot")
    if np.any(np.diff(real_slot.astype(np.int8)) > 0):  # a real slot after a padding slot
        raise ValueError("real graph slots must come before the padding slots (graph_mask)")
    order = np.argsort(edge_graph, kind="stable")
    return jraph.GraphsTuple(
        nodes=np.asarray(packed["node_feat"], np.float32),
        edges=np.asarray(packed["edge_feat"], np.float32)[order],
        senders=senders[order].astype(np.int32),
        receivers=receivers[order].astype(np.int32),
        n_node=np.bincount(node_graph, minlength=num_graphs).astype(np.int32),
        n_edge=np.bincount(edge_graph, minlength=num_graphs).astype(np.int32),
        globals=np.zeros((num_graphs, np.asarray(packed["labels"]).shape[1]), np.float32))


def params_from_torch(state_dict: Mapping[str, Any], config: Any) -> Dict[str, Dict[str, Any]]:
    """Our PyTorch GNN's ``state_dict`` -> this module's ``params`` (jnp arrays, same dtype).

    ``config``: a workload definition, a mapping or a ``GNN`` with ``hidden_dims`` and
    ``num_message_passing_steps``. Linear ``weight`` [out, in] -> Dense ``kernel`` [in, out],
    ``bias`` -> ``bias``; LayerNorm ``weight`` / ``bias`` -> ``scale`` / ``bias``. Step i's
    edge, node and global MLP layer j becomes ``Dense_k`` / ``LayerNorm_k`` with
    k = (3 i + m) k_h + j (m = 0, 1, 2; k_h = len(hidden_dims)), the decoder ``Dense_{3 S k_h}``.
    Every tensor must be used exactly once (a different config is an error, not a silent
    partial copy).
    """
    hidden = len(tuple(_field(config, "hidden_dims")))
    steps = int(_field(config, "num_message_passing_steps"))
    left = dict(state_dict)

    def take(key: str, transpose: bool = False) -> jnp.ndarray:
        if key not in left:
            raise ValueError(f"state_dict has no {key!r} (a different config?)")
        t = left.pop(key)
        t = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
        # Transposed on the host and moved by device_put: a jnp transpose or jnp.asarray
        # would compile one small XLA program per shape.
        return jax.device_put(np.ascontiguousarray(t.T) if transpose else t)

    def dense(prefix: str) -> Dict[str, jnp.ndarray]:
        return {"kernel": take(f"{prefix}.weight", transpose=True),
                "bias": take(f"{prefix}.bias")}

    params = {"node_embedding": dense("node_embedder"), "edge_embedding": dense("edge_embedder")}
    k = 0
    for i in range(steps):
        for mlp in ("edge_mlp", "node_mlp", "global_mlp"):
            for j in range(hidden):
                params[f"Dense_{k}"] = dense(f"steps.{i}.{mlp}.linears.{j}")
                params[f"LayerNorm_{k}"] = {"scale": take(f"steps.{i}.{mlp}.norms.{j}.weight"),
                                            "bias": take(f"steps.{i}.{mlp}.norms.{j}.bias")}
                k += 1
    params[f"Dense_{k}"] = dense("decoder")
    if left:
        raise ValueError(f"state_dict tensors not mapped (a different config?): {sorted(left)}")
    return params
