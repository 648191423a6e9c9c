"""Flax (linen) twin of ``models.ViT``: the same function, under AlgoPerf's Flax parameter names.

Computes exactly what ``workloads.imagenet_vit.models.ViT`` (PyTorch) computes, for every
variant (``use_glu``, ``use_post_layer_norm``, ``use_map``), with the module names and kernel
layouts of AlgoPerf's Flax ViT (``algoperf/workloads/imagenet_vit/imagenet_jax/models.py``), so
that a Flax submission finds the tree it expects. ``params_from_torch`` copies PyTorch weights
in; ``tests/jax/test_imagenet_vit_flax.py`` checks the logits agree to 1e-5.

Shapes for N images [N, S, S, 3] (NHWC, already standardised), patch p, width D, T = (S/p)^2
tokens, H heads of d = D / H, MLP width M::

    conv_patch_extract   Conv(D, p x p, stride p)  [N, S, S, 3] -> [N, S/p, S/p, D] -> [N, T, D]
    pos_embedding        + [1, T, D]  (learned; starts as the 2-D sin-cos table)
    Dropout
    Transformer          encoderblock_0 .. encoderblock_{depth-1}: [N, T, D] -> [N, T, D]
      encoder_layernorm  LayerNorm(D)  (absent with post-LN)
    pool                 mean over T -> [N, D], or MAPHead_0 (attention pooling) -> [N, D]
    head                 Dense(C) -> logits [N, C]

Encoder block, pre-LN (default) and post-LN (``use_post_layer_norm``)::

    x = x + drop(MHA_1(LN_0(x)))          x = LN_0(x + drop(MHA_1(x)))
    x = x + drop(Mlp_3(LN_2(x)))          x = LN_2(x + drop(Mlp_3(x)))

    Mlp_3(h) = Dense_last(drop(gelu(Dense_0(h)) [* Dense_1(h)]))   (Dense_1 only with GLU)

Parameter layouts (PyTorch ``nn.Linear`` weight W is [out, in]; Flax kernels are [in, out]):

    conv_patch_extract.kernel [p, p, 3, D]   = W_embed [D, 3*p*p] -> [D, 3, p, p] -> HWIO
    MHA query/key/value.kernel [D, H, d]     = W.T reshaped (output feature h*d + j -> (h, j))
    MHA query/key/value.bias   [H, d]
    MHA out.kernel             [H, d, D]     = W_out.T reshaped (input feature h*d + j)
    Dense.kernel [in, out] = W.T;   LayerNorm.scale / bias = weight / bias (epsilon 1e-6)

Where this model differs from AlgoPerf's Flax ViT (AlgoPerf's names kept, OUR function kept):

* ``pos_embedding`` [1, T, D] is a learned parameter here (ours), not AlgoPerf's fixed sin-cos
  table (no parameter there); the name is big_vision's for a learned position embedding. +T*D.
* No ``pre_logits`` (AlgoPerf's default ``rep_size=True``: Dense(D, D) + tanh before the head);
  ours feeds the pooled vector to the head directly. -(D*D + D).
* GLU: ours is ``gelu(Dense_0(h)) * Dense_1(h)`` with ``Dense_1`` [D, M] on the block input;
  AlgoPerf's is ``g * Dense_1(g)``, g = gelu(Dense_0(h)), with ``Dense_1`` [M, M] on the
  activation. Different functions; the name is AlgoPerf's, the shape and function ours.
* GELU is the exact (erf) one, as PyTorch's ``F.gelu``; AlgoPerf's Flax uses ``nn.gelu``'s
  default tanh approximation.
* Initialisation (ours): zero biases (AlgoPerf: N(0, 1e-6^2) in the MLPs), the patch kernel
  Xavier-uniform over fan_in = 3*p*p / fan_out = D as the PyTorch Linear (Flax's conv default
  would be LeCun-normal), the MAP probe N(0, 0.02^2) (AlgoPerf: Xavier-uniform).
* The MAP head's MLP drops out at ``dropout_rate`` as ours does (AlgoPerf's never drops there).
"""
import functools
from typing import Any, Dict, Mapping, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from workloads.flax_dropout import Dropout

Array = Any
Params = Dict[str, Any]

# PyTorch's models.ViT builds every LayerNorm with eps=1e-6 (also Flax's default); kept as a
# field so that a test can build a model that is deliberately off.
LAYER_NORM_EPSILON = 1e-6

# Xavier-uniform, as ``nn.init.xavier_uniform_`` on the PyTorch Linear weights. Flax's
# DenseGeneral (attention projections) flattens [D, H, d] / [H, d, D] to 2-D before calling
# it, so the fans are PyTorch's (D, D) there too.
_xavier = nn.initializers.xavier_uniform()
# The patch embedding is a Linear(3*p*p, D) in PyTorch: Xavier over fan_in = p*p*3 and
# fan_out = D. Flax's conv default would count the p*p receptive field into fan_out as well.
_patch_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=(0, 1, 2),
                                               out_axis=3)


def posemb_sincos_2d(h: int, w: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
    """[1, h*w, width] float32 2-D sin-cos position code, as ``models.sincos_2d``: token (y, x)
    in row-major order gets [sin(x w_k), cos(x w_k), sin(y w_k), cos(y w_k)] with width/4
    frequencies w_k = temperature^(-k / (width/4 - 1)). Float32 arithmetic in PyTorch's order,
    so the initial table equals PyTorch's to float32 rounding."""
    if width % 4:
        raise ValueError(f"width {width} must be a multiple of 4 for the 2-D sin-cos code")
    q = width // 4
    y, x = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32),
                       indexing="ij")
    omega = np.float32(1.0) / np.float32(temperature) ** (
        np.arange(q, dtype=np.float32) / np.float32(max(q - 1, 1)))
    x, y = x.reshape(-1, 1) * omega, y.reshape(-1, 1) * omega
    return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)[None]


def _sincos_init(h: int, w: int):
    def init(key, shape, dtype=jnp.float32):
        del key  # deterministic table
        table = posemb_sincos_2d(h, w, shape[-1])
        if tuple(shape) != table.shape:
            raise ValueError(f"pos_embedding shape {tuple(shape)} != table {table.shape}")
        return jnp.asarray(table, dtype)
    return init


def _layer_norm(epsilon: float, name: str) -> nn.LayerNorm:
    # Two-pass variance (mean of squared deviations), as torch.nn.LayerNorm, instead of Flax's
    # default E[x^2] - E[x]^2: the latter cancels badly when |mean| >> std (post-LN streams).
    return nn.LayerNorm(epsilon=epsilon, use_fast_variance=False, name=name)


def _attention(num_heads: int, name: str) -> nn.MultiHeadDotProductAttention:
    # softmax(q k^T / sqrt(d)) v per head, as F.scaled_dot_product_attention; no dropout on the
    # attention weights (ours has none), biases start at zero (Flax's default, and ours).
    return nn.MultiHeadDotProductAttention(num_heads=num_heads, kernel_init=_xavier, name=name)


class MlpBlock(nn.Module):
    """[N, T, D] -> [N, T, D]: Dense_last(drop(gelu(Dense_0(x)) [* Dense_1(x)])), inner width M.

    Without GLU: Dense_0 [D, M], Dense_1 [M, D]. With GLU: Dense_0 [D, M], Dense_1 [D, M] (the
    gate, on the block input, as ``models.Mlp.glu``), Dense_2 [M, D].
    """

    mlp_dim: int
    use_glu: bool = False

    @nn.compact
    def __call__(self, x: Array, train: bool = False, dropout_rate: float = 0.0) -> Array:
        dense = functools.partial(nn.Dense, kernel_init=_xavier)  # zero biases by default
        h = nn.gelu(dense(self.mlp_dim, name="Dense_0")(x), approximate=False)
        if self.use_glu:
            h = h * dense(self.mlp_dim, name="Dense_1")(x)
        h = Dropout(dropout_rate)(h, deterministic=not train)
        return dense(x.shape[-1], name="Dense_2" if self.use_glu else "Dense_1")(h)


class Encoder1DBlock(nn.Module):
    """One encoder block, pre-LN (default) or post-LN; [N, T, D] -> [N, T, D] (module docstring).

    The LayerNorm names follow AlgoPerf's: LayerNorm_0 belongs to the attention half and
    LayerNorm_2 to the MLP half in both orders (PyTorch ``ln1`` and ``ln2``).
    """

    mlp_dim: int
    num_heads: int
    use_glu: bool = False
    use_post_layer_norm: bool = False
    layer_norm_epsilon: float = LAYER_NORM_EPSILON

    @nn.compact
    def __call__(self, x: Array, train: bool = False, dropout_rate: float = 0.0) -> Array:
        def drop(y):
            return Dropout(dropout_rate)(y, deterministic=not train)

        ln_0 = _layer_norm(self.layer_norm_epsilon, "LayerNorm_0")
        attention = _attention(self.num_heads, "MultiHeadDotProductAttention_1")
        ln_2 = _layer_norm(self.layer_norm_epsilon, "LayerNorm_2")
        mlp = MlpBlock(mlp_dim=self.mlp_dim, use_glu=self.use_glu, name="MlpBlock_3")
        if self.use_post_layer_norm:
            x = ln_0(x + drop(attention(x)))
            return ln_2(x + drop(mlp(x, train, dropout_rate)))
        x = x + drop(attention(ln_0(x)))
        return x + drop(mlp(ln_2(x), train, dropout_rate))


class Encoder(nn.Module):
    """``depth`` blocks ``encoderblock_<i>``, then ``encoder_layernorm`` unless post-LN (each
    post-LN block already ends in a LayerNorm). [N, T, D] -> [N, T, D]."""

    depth: int
    mlp_dim: int
    num_heads: int
    use_glu: bool = False
    use_post_layer_norm: bool = False
    layer_norm_epsilon: float = LAYER_NORM_EPSILON

    @nn.compact
    def __call__(self, x: Array, train: bool = False, dropout_rate: float = 0.0) -> Array:
        for i in range(self.depth):
            x = Encoder1DBlock(mlp_dim=self.mlp_dim, num_heads=self.num_heads,
                               use_glu=self.use_glu, use_post_layer_norm=self.use_post_layer_norm,
                               layer_norm_epsilon=self.layer_norm_epsilon,
                               name=f"encoderblock_{i}")(x, train, dropout_rate)
        if self.use_post_layer_norm:
            return x
        return _layer_norm(self.layer_norm_epsilon, "encoder_layernorm")(x)


class MAPHead(nn.Module):
    """Multi-head attention pooling, [N, T, D] -> [N, D]: a learned ``probe`` [1, 1, D] queries
    the tokens (MultiHeadDotProductAttention_0), then y = y + MlpBlock_0(LayerNorm_0(y))."""

    mlp_dim: int
    num_heads: int
    layer_norm_epsilon: float = LAYER_NORM_EPSILON

    @nn.compact
    def __call__(self, x: Array, train: bool = False, dropout_rate: float = 0.0) -> Array:
        n, _, d = x.shape
        probe = self.param("probe", nn.initializers.normal(stddev=0.02), (1, 1, d), x.dtype)
        y = _attention(self.num_heads, "MultiHeadDotProductAttention_0")(
            jnp.broadcast_to(probe, (n, 1, d)), x)                       # [N, 1, D]
        h = _layer_norm(self.layer_norm_epsilon, "LayerNorm_0")(y)
        y = y + MlpBlock(mlp_dim=self.mlp_dim, name="MlpBlock_0")(h, train, dropout_rate)
        return y[:, 0]


class ViT(nn.Module):
    """[N, S, S, 3] standardised NHWC images -> [N, num_classes] logits.

    Defaults are ViT-S/16 (ours; AlgoPerf's Flax defaults are ViT-B sizes, its workload passes
    S/16). ``train`` turns dropout on; it then draws from the ``'dropout'`` rng at the places of
    ``models.ViT``: after the position embedding, on both residual branches of every block,
    inside every MLP after the activation (the MAP head's too). ``dropout_rate`` is a float
    or a traced scalar (``flax_dropout``).
    """

    num_classes: int = 1000
    patch_size: Tuple[int, int] = (16, 16)
    width: int = 384
    depth: int = 12
    mlp_dim: int = 1536
    num_heads: int = 6
    use_glu: bool = False
    use_post_layer_norm: bool = False
    use_map: bool = False
    layer_norm_epsilon: float = LAYER_NORM_EPSILON

    @nn.compact
    def __call__(self, x: Array, train: bool = False, dropout_rate: float = 0.0) -> Array:
        patch = tuple(self.patch_size)
        x = nn.Conv(self.width, patch, strides=patch, padding="VALID", kernel_init=_patch_init,
                    name="conv_patch_extract")(x)                          # [N, S/p, S/p, D]
        n, h, w, d = x.shape
        x = x.reshape(n, h * w, d)                                         # row-major tokens
        x = x + self.param("pos_embedding", _sincos_init(h, w), (1, h * w, d), x.dtype)
        x = Dropout(dropout_rate)(x, deterministic=not train)
        x = Encoder(depth=self.depth, mlp_dim=self.mlp_dim, num_heads=self.num_heads,
                    use_glu=self.use_glu, use_post_layer_norm=self.use_post_layer_norm,
                    layer_norm_epsilon=self.layer_norm_epsilon,
                    name="Transformer")(x, train, dropout_rate)
        if self.use_map:
            x = MAPHead(mlp_dim=self.mlp_dim, num_heads=self.num_heads,
                        layer_norm_epsilon=self.layer_norm_epsilon,
                        name="MAPHead_0")(x, train, dropout_rate)
        else:
            x = jnp.mean(x, axis=1)                                        # [N, D]
        # Zero-initialised head (AlgoPerf's head_zeroinit, ours): initial logits are 0.
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name="head")(x)


def from_definition(definition: Any) -> ViT:
    """The ViT of a workload definition (``definition.ImagenetVit*Definition``, class or
    instance): the same fields ``pytorch.ImagenetVitWorkload.build_model`` reads."""
    return ViT(num_classes=definition.num_classes, patch_size=(definition.patch,) * 2,
               width=definition.width, depth=definition.depth, mlp_dim=definition.mlp_dim,
               num_heads=definition.num_heads, use_glu=definition.use_glu,
               use_post_layer_norm=definition.use_post_layer_norm, use_map=definition.use_map)


def num_params(params: Params) -> int:
    return sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree.leaves(params))


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch.Tensor; torch itself is not needed here
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def params_from_torch(state_dict: Mapping[str, Any], config: Any) -> Params:
    """PyTorch ``models.ViT`` state_dict -> the Flax ``params`` of the same model.

    ``config``: the Flax ``ViT`` to load into, or a workload definition (``from_definition``);
    it gives the head count (not recoverable from shapes) and the variant switches. Every key
    of the state dict must be used and every expected key present, so a state dict of another
    variant or depth is refused instead of half-loaded. Layouts: the module docstring.
    """
    vit = config if isinstance(config, ViT) else from_definition(config)
    sd = {k: _to_numpy(v) for k, v in state_dict.items()}
    used = set()

    def take(key: str) -> np.ndarray:
        if key not in sd:
            raise KeyError(f"state_dict has no {key!r}: does it match the config {vit}?")
        used.add(key)
        return sd[key]

    def dense(prefix: str) -> Params:
        return {"kernel": take(f"{prefix}.weight").T, "bias": take(f"{prefix}.bias")}

    def layer_norm(prefix: str) -> Params:
        return {"scale": take(f"{prefix}.weight"), "bias": take(f"{prefix}.bias")}

    def attention(prefix: str) -> Params:
        heads = vit.num_heads

        def projection(name: str) -> Params:  # W [h*d + j, D_in] -> kernel [D_in, h, j]
            w, b = take(f"{prefix}.{name}.weight"), take(f"{prefix}.{name}.bias")
            return {"kernel": w.T.reshape(w.shape[1], heads, -1), "bias": b.reshape(heads, -1)}

        w_out = take(f"{prefix}.out.weight")   # [D_out, h*d + j] -> kernel [h, j, D_out]
        return {"query": projection("q"), "key": projection("k"), "value": projection("v"),
                "out": {"kernel": w_out.T.reshape(heads, -1, w_out.shape[0]),
                        "bias": take(f"{prefix}.out.bias")}}

    def mlp(prefix: str, glu: bool) -> Params:
        names = ("fc1", "glu", "fc2") if glu else ("fc1", "fc2")
        return {f"Dense_{i}": dense(f"{prefix}.{name}") for i, name in enumerate(names)}

    w_embed = take("embed.weight")             # [D, 3*p*p], features (c, p_y, p_x)
    ph, pw = vit.patch_size
    kernel = w_embed.reshape(w_embed.shape[0], -1, ph, pw).transpose(2, 3, 1, 0)  # HWIO
    params: Params = {
        "conv_patch_extract": {"kernel": kernel, "bias": take("embed.bias")},
        "pos_embedding": take("pos_embedding"),
    }
    encoder: Params = {}
    for i in range(vit.depth):
        encoder[f"encoderblock_{i}"] = {
            "LayerNorm_0": layer_norm(f"blocks.{i}.ln1"),
            "MultiHeadDotProductAttention_1": attention(f"blocks.{i}.attn"),
            "LayerNorm_2": layer_norm(f"blocks.{i}.ln2"),
            "MlpBlock_3": mlp(f"blocks.{i}.mlp", vit.use_glu),
        }
    if not vit.use_post_layer_norm:
        encoder["encoder_layernorm"] = layer_norm("encoder_norm")
    params["Transformer"] = encoder
    if vit.use_map:
        params["MAPHead_0"] = {
            "probe": take("pool.probe"),
            "MultiHeadDotProductAttention_0": attention("pool.attn"),
            "LayerNorm_0": layer_norm("pool.ln"),
            "MlpBlock_0": mlp("pool.mlp", glu=False),
        }
    params["head"] = dense("head")
    unused = sorted(set(sd) - used)
    if unused:
        raise ValueError(f"state_dict keys not used by {vit}: {unused[:8]}"
                         f"{' ...' if len(unused) > 8 else ''}")
    return jax.tree.map(jnp.asarray, params)


def param_shapes(model: ViT, image_size: int) -> Dict[str, Tuple[int, ...]]:
    """{'a/b/c': shape} of ``model``'s params for [1, S, S, 3] inputs, without computing any."""
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                            jnp.zeros((1, image_size, image_size, 3), jnp.float32))["params"]
    flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
    return {"/".join(k.key for k in path): tuple(leaf.shape) for path, leaf in flat}


__all__: Sequence[str] = ("ViT", "MlpBlock", "Encoder1DBlock", "Encoder", "MAPHead",
                          "posemb_sincos_2d", "from_definition", "params_from_torch",
                          "param_shapes", "num_params", "LAYER_NORM_EPSILON")
