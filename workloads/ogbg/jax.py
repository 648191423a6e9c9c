"""ogbg in JAX: the Flax GNN of ``flax_models`` on ``jraph.GraphsTuple`` batches.

A process's batch arrives from the data layer as one packed graph per device, stacked along a
leading device axis (``OgbgData`` packs ``backend.graph_batch_shards`` pieces); each piece
becomes a ``GraphsTuple``, the stack is split over the mesh, and the model runs on every
piece (``jax.vmap``), so graphs never span devices. Logits, targets and weights are
[devices, Gc, 128]; the loss sums over all of them. That stack is also the pmap layout's
batch: inside the submission's ``pmap`` the model gets one device's ``GraphsTuple``.
"""
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from algoperf import jax_sharding_utils
from workloads.jax_workload import JaxModel
from workloads.ogbg import flax_models


def stacked_graphs(packed: Dict[str, np.ndarray]) -> jraph.GraphsTuple:
    """[S, ...] packed pieces -> one GraphsTuple whose leaves are stacked along axis 0."""
    pieces = [flax_models.graphs_tuple_from_packed({k: v[i] for k, v in packed.items()})
              for i in range(len(packed["graph_mask"]))]
    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *pieces)


class OgbgJax(JaxModel):
    def build_model(self):
        return flax_models.GNN.from_config(self)

    def init_inputs(self):
        nodes, edges = np.zeros((2, 9), np.float32), np.zeros((1, 3), np.float32)
        return jraph.GraphsTuple(
            nodes=nodes, edges=edges, senders=np.zeros(1, np.int32),
            receivers=np.zeros(1, np.int32), n_node=np.array([1, 1], np.int32),
            n_edge=np.array([1, 0], np.int32),
            globals=np.zeros((2, self.num_outputs), np.float32))

    def _variables_from_copy(self, state_dict):
        return flax_models.params_from_torch(state_dict, self), {}

    def init_model_fn(self, rng):
        params, model_state = super().init_model_fn(rng)
        # The decoder is the last Dense (AlgoPerf numbers them in creation order).
        self.output_module = max((k for k in params if k.startswith("Dense_")),
                                 key=lambda k: int(k.split("_")[1]))
        return params, model_state

    def apply(self, variables, graphs, train: bool, dropout_rate: float, rngs=None,
              mutable=False):
        """The model on every stacked piece; dropout keys differ per piece. Inside a pmap
        (the pmap layout) ``graphs`` is one device's piece."""
        if graphs.n_node.ndim == 1:
            return self._model.apply(variables, graphs, train=train, dropout_rate=dropout_rate,
                                     rngs=rngs)
        pieces = graphs.n_node.shape[0]
        keys = jax.random.split(rngs["dropout"], pieces) if rngs else None

        def one(graph, key):
            piece_rngs = {"dropout": key} if key is not None else None
            return self._model.apply(variables, graph, train=train, dropout_rate=dropout_rate,
                                     rngs=piece_rngs)
        return jax.vmap(one)(graphs, keys) if keys is not None else \
            jax.vmap(lambda g: one(g, None))(graphs)

    def to_model_inputs(self, batch: Dict[str, np.ndarray]) -> Dict[str, Any]:
        return jax_sharding_utils.shard_along_batch_dim(
            {"inputs": stacked_graphs(batch), "targets": batch["labels"],
             "weights": batch["label_mask"]})

    def split_per_device(self, batch):
        """Already one packed piece per device, stacked along the device axis."""
        return batch

    def model_fn(self, params, augmented_and_preprocessed_input_batch, model_state, mode, rng,
                 update_batch_norm, dropout_rate: Optional[float] = None,
                 use_running_average_bn=None):
        # AlgoPerf's ogbg default when the submission passes no dropout rate.
        rate = self.default_dropout_rate if dropout_rate is None else dropout_rate
        return super().model_fn(params, augmented_and_preprocessed_input_batch, model_state,
                                mode, rng, update_batch_norm, dropout_rate=rate)

    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing: float = 0.0):
        """Masked binary cross-entropy (formula in ``workloads.ogbg.metrics``); NaN labels are
        never counted."""
        measured = ~jnp.isnan(label_batch)
        mask = measured.astype(logits_batch.dtype) if mask_batch is None \
            else mask_batch.astype(logits_batch.dtype) * measured
        labels = jnp.where(measured, label_batch, 0.0).astype(logits_batch.dtype)
        num_tasks = labels.shape[-1]
        target = (1.0 - label_smoothing) * labels + label_smoothing / num_tasks
        losses = (jnp.maximum(logits_batch, 0) - logits_batch * target
                  + jnp.log1p(jnp.exp(-jnp.abs(logits_batch))))
        per_example = losses * mask
        return {"summed": per_example.sum(), "n_valid_examples": mask.sum(),
                "per_example": per_example}
