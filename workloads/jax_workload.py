"""The JAX side of a workload: a Flax (linen) model, its loss, its parameter types, the mesh.

A family's mixin (``workloads/<family>/jax.py``) adds ``build_model()`` (a linen Module called
as ``model(inputs, train, dropout_rate)``), ``init_inputs()`` (a batch of the right shapes for
``init``) and, where needed, ``to_model_inputs`` / ``on_device``. The interface is AlgoPerf's
JAX one:

    init_model_fn(rng) -> (params, model_state)     params: the linen 'params' collection,
                                                    model_state: the other collections
                                                    ({'batch_stats': ...} or {}), both
                                                    replicated over the mesh
    model_fn(params, batch, model_state, mode, rng, update_batch_norm, dropout_rate)
        -> (logits, new_model_state)                usable inside jax.jit; rng: a key
    loss_fn(label_batch, logits_batch, mask_batch, label_smoothing)
        -> {'summed', 'n_valid_examples', 'per_example'}

Batches reach the submission as ``jax.Array``s split along their leading axis over the mesh
(``algoperf.jax_sharding_utils``); under ``jax.jit`` a step then runs data-parallel on every
device. In the pmap layout (``algoperf.backends.jax_layout``, the backend's ``layout``)
parameters and model state come with a leading device axis and training batches as
``[D, B/D, ...]``; ``model_fn`` then runs inside the submission's ``pmap`` on one device's
piece. ``rng`` may be the harness's key (numpy uint32 [2]) or any JAX key; dropout draws from
it.
"""
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from algoperf import jax_sharding_utils, random_utils, spec
from algoperf.backends import jax_layout


def as_key(rng) -> jax.Array:
    """A JAX PRNG key from the harness's key (uint32 [2]) or from a JAX key (typed or raw)."""
    rng = jnp.asarray(rng) if not isinstance(rng, jax.Array) else rng
    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return rng
    return rng.astype(jnp.uint32)


def _rate(dropout_rate):
    """A Python number stays one (a zero rate then skips dropout at trace time)."""
    return float(dropout_rate) if isinstance(dropout_rate, (int, float, np.number)) \
        else dropout_rate


def parameter_types(params: Dict[str, Any], model_state: Dict[str, Any]) -> Dict[str, Any]:
    """Each leaf's AlgoPerf type from its path (AlgoPerf's ``jax_param_types`` rules): norm
    scales and biases (BatchNorm when the module keeps batch statistics), conv kernels (4-D),
    embeddings, attention projections, other kernels and biases."""
    P = spec.ParameterType
    batch_norm_modules = {path[:-1] for path, _ in _leaves(model_state.get("batch_stats", {}))}

    def kind(path, leaf):
        name, module = path[-1], path[:-1]
        joined = "/".join(path).lower()
        is_norm = name == "scale" or any(t in joined for t in ("layernorm", "batchnorm",
                                                                "groupnorm", "norm"))
        if is_norm and name in ("scale", "bias"):
            batch = module in batch_norm_modules
            if name == "scale":
                return P.BATCH_NORM_SCALE if batch else P.LAYER_NORM_SCALE
            return P.BATCH_NORM_BIAS if batch else P.LAYER_NORM_BIAS
        if "attention" in joined:
            for token, t in (("query", P.ATTENTION_Q), ("key", P.ATTENTION_K),
                             ("value", P.ATTENTION_V), ("out", P.ATTENTION_OUT)):
                if token in module[-1].lower():
                    return P.ATTENTION_BIAS if name == "bias" else t
        if name == "bias":
            return P.BIAS
        if name == "embedding" or "embed" in name:
            return P.EMBEDDING
        if name == "kernel" and np.ndim(leaf) == 4:
            return P.CONV_WEIGHT
        return P.WEIGHT

    return _unflatten({path: kind(path, leaf) for path, leaf in _leaves(params)})


def _leaves(tree, prefix=()):
    if isinstance(tree, dict) or hasattr(tree, "items"):
        for key, value in tree.items():
            yield from _leaves(value, prefix + (str(key),))
    else:
        yield prefix, tree


def _unflatten(flat: Dict[tuple, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


class JaxModel:
    """Mixin placed first, before the family's ``DataLayer`` and the definition."""

    framework = "jax"
    output_module: str = ""   # the parameter-tree key of the output layer

    # --- hooks ---------------------------------------------------------------------------
    def build_model(self):
        raise NotImplementedError

    def init_inputs(self) -> Any:
        """Inputs of the shapes the model takes, for ``init`` (a batch of one is enough)."""
        raise NotImplementedError

    def variables_from_torch(self, state_dict) -> Any:
        """(params, model_state) holding the weights of the PyTorch model's ``state_dict``:
        the same initial weights in both frameworks (parity tests, ported checkpoints).

        The tensors are copied first: on the CPU ``jnp.asarray`` may alias a numpy view of a
        torch tensor, and the torch model training on would then change the JAX weights."""
        copied = {k: np.array(v.detach().cpu().numpy() if hasattr(v, "detach") else v,
                              copy=True) for k, v in state_dict.items()}
        return self._variables_from_copy(copied)

    def _variables_from_copy(self, state_dict: Dict[str, np.ndarray]) -> Any:
        raise NotImplementedError

    def to_model_inputs(self, batch: Dict[str, np.ndarray]) -> Dict[str, Any]:
        """Numpy batch -> arrays split along the leading axis over the mesh."""
        return jax_sharding_utils.shard_along_batch_dim(dict(batch))

    def split_per_device(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        """A model batch in the pmap layout: ``[B, ...]`` -> ``[D, B/D, ...]``."""
        return jax_layout.split_per_device(batch)

    @property
    def _per_device_layout(self) -> bool:
        return getattr(self._backend, "layout", jax_layout.JIT) == jax_layout.PMAP

    def on_device(self, batch: Dict[str, Any], train: bool,
                  rng: Optional[np.random.Generator]) -> Dict[str, Any]:
        del train, rng
        return batch

    def apply(self, variables, inputs, train: bool, dropout_rate: float, rngs=None,
              mutable=False):
        """``model.apply``; families whose batches stack per-device pieces override it."""
        return self._model.apply(variables, inputs, train=train, dropout_rate=dropout_rate,
                                 rngs=rngs, mutable=mutable)

    # --- the seam with DataLayer ------------------------------------------------------------
    def _model_batch(self, batch: Dict[str, np.ndarray], train: bool,
                     rng: Optional[np.random.Generator]) -> Dict[str, Any]:
        """Training batches go to the submission in its layout; eval batches stay global
        (the eval code is the harness's)."""
        model_batch = self.on_device(self.to_model_inputs(batch), train, rng)
        return self.split_per_device(model_batch) if train and self._per_device_layout \
            else model_batch

    def _eval_variables(self, params, model_state):
        """The pmap layout's per-device copies made one: device 0's parameters, the mean of
        the per-device BatchNorm statistics."""
        if self._per_device_layout:
            return (jax_layout.unreplicate_params(params),
                    jax_layout.average_over_devices(model_state))
        return params, model_state

    def _eval_logits(self, params, model_state, batch: Dict[str, Any]) -> np.ndarray:
        if getattr(self, "_jitted_eval", None) is None:
            def logits(params, model_state, inputs):
                return self.apply({"params": params, **model_state}, inputs, train=False,
                                  dropout_rate=0.0)
            self._jitted_eval = jax.jit(logits)
        return np.asarray(self._jitted_eval(params, model_state, batch["inputs"]),
                          dtype=np.float32)

    # --- model -----------------------------------------------------------------------------
    def init_model_fn(self, rng: spec.RandomState) -> spec.ModelInitState:
        self._model = self.build_model()
        self._jitted_eval = None
        params_key, dropout_key = jax.random.split(
            jax.random.PRNGKey(random_utils.to_int(rng)))
        variables = jax.jit(lambda p, d: self._model.init(
            {"params": p, "dropout": d}, self.init_inputs(), train=False))(params_key,
                                                                           dropout_key)
        variables = jax.tree_util.tree_map(jnp.asarray, dict(variables))
        params = dict(variables.pop("params"))
        model_state = {k: v for k, v in variables.items()}
        self._param_shapes = jax.tree_util.tree_map(lambda p: spec.ShapeTuple(p.shape), params)
        self._param_types = parameter_types(params, model_state)
        if self._per_device_layout:
            return (jax_layout.replicate_per_device(params),
                    jax_layout.replicate_per_device(model_state))
        return (jax_sharding_utils.replicate(params),
                jax_sharding_utils.replicate(model_state))

    def is_output_params(self, param_key: spec.ParameterKey) -> bool:
        return param_key == self.output_module

    def model_fn(self, params, augmented_and_preprocessed_input_batch: Dict[str, Any],
                 model_state: spec.ModelAuxiliaryState, mode: spec.ForwardPassMode,
                 rng: spec.RandomState, update_batch_norm: bool, dropout_rate: float = 0.0,
                 use_running_average_bn: Optional[bool] = None):
        """``dropout_rate``: a float, or a traced scalar when a submission passes it into its
        jitted step (AlgoPerf's jit baselines do)."""
        inputs = augmented_and_preprocessed_input_batch["inputs"]
        state = dict(model_state or {})
        variables = {"params": params, **state}
        if mode != spec.ForwardPassMode.TRAIN:
            return self.apply(variables, inputs, train=False, dropout_rate=0.0), model_state
        rngs = {"dropout": as_key(rng)} if rng is not None else None
        if "batch_stats" not in state:
            return self.apply(variables, inputs, train=True, dropout_rate=_rate(dropout_rate),
                              rngs=rngs), model_state
        logits, updated = self.apply(variables, inputs, train=True,
                                     dropout_rate=_rate(dropout_rate), rngs=rngs,
                                     mutable=["batch_stats"])
        new_state = {**state, **updated} if update_batch_norm else model_state
        return logits, new_state

    # --- loss ------------------------------------------------------------------------------
    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing: float = 0.0):
        """l_i = -sum_c q_ic log softmax(z_i)_c, q_i = (1 - s) y_i + s / C with y_i the one-hot
        label (or the given distribution, e.g. mixup's); masked sum and count."""
        num_classes = logits_batch.shape[-1]
        if label_batch.ndim == logits_batch.ndim:  # already a distribution
            targets = label_batch.astype(jnp.float32)
        else:
            targets = jax.nn.one_hot(label_batch, num_classes, dtype=jnp.float32)
        targets = (1.0 - label_smoothing) * targets + label_smoothing / num_classes
        per_example = -jnp.sum(targets * jax.nn.log_softmax(logits_batch, axis=-1), axis=-1)
        if mask_batch is None:
            return {"summed": per_example.sum(),
                    "n_valid_examples": jnp.asarray(per_example.shape[0], jnp.float32),
                    "per_example": per_example}
        per_example = per_example * mask_batch
        return {"summed": per_example.sum(), "n_valid_examples": mask_batch.sum(),
                "per_example": per_example}
