"""Wide ResNets in Flax (linen): the function of ``workloads/cifar_wrn/models.py``, NHWC.

Same architecture, layer for layer (see models.py for the paper): a 3x3 stem conv to 16
channels, three groups of n = (depth - 4) / 6 pre-activation blocks with 16k, 32k, 64k
channels (groups 2 and 3 halve the resolution in their first block), then
norm -> activation -> global average pool -> linear. Block::

    h = act(norm1(x))
    y = conv3x3(h, stride) -> act(norm2(.)) -> dropout(p) -> conv3x3
    out = y + (x if shapes match else conv1x1(h, stride))

Shapes for WRN-16-4 on x [N, 32, 32, 3]: stem [N, 32, 32, 16] -> group 1 [N, 32, 32, 64]
-> group 2 [N, 16, 16, 128] -> group 3 [N, 8, 8, 256] -> pool [N, 256] -> logits [N, 10].

Parameter tree: names mirror the PyTorch module names (``blocks.0.norm1.weight`` is
``blocks_0/norm1/scale``), so a checkpoint reads the same in both. For WRN-10-1 (the tiny
tier, 77,850 parameters; c: channels, HWIO kernels)::

    stem/kernel                 [3, 3, 3, 16]
    blocks_0/norm1/{scale,bias} [16]      blocks_0/conv1/kernel [3, 3, 16, 16]
    blocks_0/norm2/{scale,bias} [16]      blocks_0/conv2/kernel [3, 3, 16, 16]
    blocks_1/norm1/{scale,bias} [16]      blocks_1/conv1/kernel [3, 3, 16, 32]
    blocks_1/norm2/{scale,bias} [32]      blocks_1/conv2/kernel [3, 3, 32, 32]
    blocks_1/shortcut/kernel    [1, 1, 16, 32]
    blocks_2/norm1/{scale,bias} [32]      blocks_2/conv1/kernel [3, 3, 32, 64]
    blocks_2/norm2/{scale,bias} [64]      blocks_2/conv2/kernel [3, 3, 64, 64]
    blocks_2/shortcut/kernel    [1, 1, 32, 64]
    final_norm/{scale,bias}     [64]
    head/kernel [64, 10]        head/bias [10]

With ``norm='batch'`` every norm also has ``batch_stats`` ``<same path>/{mean,var}`` [c]
(PyTorch's running_mean / running_var); with ``norm='group'`` there is no ``batch_stats``.
WRN-16-4 has 2,748,890 parameters (``num_parameters``), like the PyTorch model.

Init (the PyTorch ``reset_parameters``): convs He-normal with fan-out, N(0, 2 / (kh kw c_out))
(untruncated: ``jax.nn.initializers.he_normal`` is truncated and fan-in, so not it); norms
scale 1, bias 0; head kernel U(-1/sqrt(c), 1/sqrt(c)) (PyTorch's Linear default) and bias 0.

Parity notes (each is a way to get a model that trains, but not the same model):
* BatchNorm: PyTorch normalises with the biased batch variance but updates ``running_var``
  with the unbiased one (x m / (m - 1), m = N H W); ``flax.linen.BatchNorm`` uses the biased
  one for both, so it would drift from PyTorch's running statistics. Hence ``BatchNorm`` below.
  PyTorch momentum 0.1 (weight of the new batch) is momentum 0.9 here (weight of the old
  average); eps 1e-5 in both (Flax's own BatchNorm default is also 1e-5, GroupNorm's 1e-6).
* Padding: PyTorch's 3x3 stride-2 conv pads 1 on every side; Flax ``'SAME'`` pads (0, 1) for
  even sizes, which shifts the sampling grid by a pixel. Padding is explicit here.
* GELU: PyTorch's default is the exact erf form, Flax's ``nn.gelu`` default the tanh form.
* Epsilon: on unit-variance activations eps 1e-6 instead of 1e-5 moves WRN logits by only
  ~2e-6, so a logits comparison at 1e-5 cannot see Flax's GroupNorm default; the tests compare
  on inputs scaled by 1e-3 as well, where the first norm's variance is ~eps.
"""
import functools
from typing import Any, Callable, Dict, Mapping, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from workloads.flax_dropout import Dropout

ACTIVATIONS: Dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "silu": nn.silu,  # x * sigmoid(x), as torch.nn.SiLU
    "gelu": functools.partial(nn.gelu, approximate=False),  # torch.nn.GELU() is the erf form
}

# kaiming_normal_(mode='fan_out', nonlinearity='relu'): std = sqrt(2 / fan_out), untruncated;
# Flax's fan_out of an HWIO kernel is kh * kw * c_out, PyTorch's of OIHW the same number.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# nn.Linear's default weight init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) = variance 1 / (3 fan_in).
head_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class BatchNorm(nn.Module):
    """PyTorch ``nn.BatchNorm2d`` semantics over the last axis of x [..., C].

    train: y = (x - mu) / sqrt(s2 + eps) * scale + bias with mu, s2 the batch mean and biased
    variance over the m = x.size / C positions; the running averages (``batch_stats``) become
    mean <- momentum * mean + (1 - momentum) * mu and
    var <- momentum * var + (1 - momentum) * s2 * m / (m - 1)   (the unbiased variance).
    eval: the same with the running mean and var in place of mu and s2.

    As in ``flax.linen.BatchNorm``, train=True needs ``mutable=['batch_stats']`` (except in
    ``init``, which leaves the averages at mean 0, var 1).
    """

    momentum: float = 0.9  # PyTorch momentum 0.1
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        c = x.shape[-1]
        axes = tuple(range(x.ndim - 1))
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (c,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (c,), jnp.float32)
        if train:
            mean = x.mean(axes)
            # Two-pass variance, not E[x^2] - E[x]^2: the latter cancels badly when |mu| >> s.
            var = jnp.square(x - mean).mean(axes)
            m = x.size // c
            if m < 2:  # PyTorch refuses too: the unbiased variance needs two values
                raise ValueError(f"BatchNorm in training needs > 1 value per channel, got {m}")
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = (self.momentum * ra_var.value
                                + (1 - self.momentum) * var * (m / (m - 1)))
        else:
            mean, var = ra_mean.value, ra_var.value
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


class GroupNorm(nn.Module):
    """PyTorch ``nn.GroupNorm(num_groups, C)`` on x [N, ..., C]: each example's channels split
    into G groups of C / G consecutive channels (PyTorch's grouping of [N, C, H, W]), and

        y = (x - mu) / sqrt(s2 + eps) * scale + bias,   mu, s2 over (H, W, C / G) per (n, g),

    s2 the biased variance; scale, bias [C]. No batch statistics, so train and eval agree.
    (``flax.linen.GroupNorm`` computes the same with ``epsilon=1e-5`` set, its default being
    1e-6; this one spells the math out next to ``BatchNorm`` and compiles faster on CPU.)
    """

    num_groups: int
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        del train
        c, g = x.shape[-1], self.num_groups
        if c % g:
            raise ValueError(f"{c} channels do not split into {g} groups")
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        groups = x.reshape(x.shape[:-1] + (g, c // g))  # [N, ..., G, C / G]
        axes = tuple(range(1, x.ndim - 1)) + (x.ndim,)  # all but N and G
        mean = groups.mean(axes, keepdims=True)
        var = jnp.square(groups - mean).mean(axes, keepdims=True)  # two-pass, as BatchNorm
        y = ((groups - mean) * jax.lax.rsqrt(var + self.epsilon)).reshape(x.shape)
        return y * scale + bias


def make_norm(kind: str, channels: int, epsilon: float, momentum: float,
              name: str) -> nn.Module:
    """``norm(x, train)`` for x [..., channels], as ``models.make_norm``: 'batch' is
    ``BatchNorm``; 'group' is ``GroupNorm`` with 16 groups (or fewer when C < 16), which has no
    batch statistics. Call inside a compact method."""
    if kind == "batch":
        return BatchNorm(momentum=momentum, epsilon=epsilon, name=name)
    if kind == "group":
        return GroupNorm(num_groups=min(16, channels), epsilon=epsilon, name=name)
    raise ValueError(f"unknown norm {kind!r}; use 'batch' or 'group'")


class BasicBlock(nn.Module):
    """Pre-activation block: [N, H, W, C_in] -> [N, H / stride, W / stride, out_channels]."""

    out_channels: int
    stride: int
    norm: str = "batch"
    activation: str = "relu"
    epsilon: float = 1e-5
    momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, dropout_rate: float = 0.0) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        conv = functools.partial(nn.Conv, self.out_channels, use_bias=False,
                                 kernel_init=conv_kernel_init)
        norm = functools.partial(make_norm, self.norm, epsilon=self.epsilon,
                                 momentum=self.momentum)
        s = (self.stride, self.stride)
        pad = ((1, 1), (1, 1))  # PyTorch padding=1; 'SAME' would pad (0, 1) at stride 2
        h = act(norm(x.shape[-1], name="norm1")(x, train))
        # The projection sees the pre-activated input; an identity shortcut keeps the raw x.
        if self.stride != 1 or x.shape[-1] != self.out_channels:
            skip = conv((1, 1), s, padding="VALID", name="shortcut")(h)
        else:
            skip = x
        y = conv((3, 3), s, padding=pad, name="conv1")(h)
        y = act(norm(self.out_channels, name="norm2")(y, train))
        # Inverted dropout (kept units scaled by 1 / (1 - p)), as F.dropout; only in training.
        y = Dropout(rate=dropout_rate, deterministic=not train)(y)
        return skip + conv((3, 3), (1, 1), padding=pad, name="conv2")(y)


class WideResNet(nn.Module):
    """WRN-depth-widen: [N, H, W, 3] normalised images -> [N, num_classes] logits.

    Attributes:
      depth: 6n + 4 (10, 16, 22, 28, ...): n blocks per group.
      widen: channel multiplier k (group widths 16k, 32k, 64k).
      activation: 'relu' (the paper's), 'silu' or 'gelu' (exact erf form).
      norm: 'batch' (the paper's) or 'group'.
      epsilon: of every norm; 1e-5 is PyTorch's default (the value models.py uses).
      momentum: of BatchNorm's running averages, Flax convention; 0.9 is PyTorch's 0.1.

    Call: ``model.apply(variables, x, train, dropout_rate)``; ``dropout_rate`` is a float or
    a traced scalar (``flax_dropout``); with train=True and a rate that is not a Python 0 it
    needs a 'dropout' rng.
    """

    depth: int = 16
    widen: int = 4
    num_classes: int = 10
    activation: str = "relu"
    norm: str = "batch"
    epsilon: float = 1e-5
    momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, dropout_rate: float = 0.0) -> jax.Array:
        if self.depth < 10 or (self.depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4 with n >= 1, got {self.depth}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; use one of "
                             f"{sorted(ACTIVATIONS)}")
        blocks_per_group = (self.depth - 4) // 6
        widths = (16, 16 * self.widen, 32 * self.widen, 64 * self.widen)
        x = nn.Conv(widths[0], (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                    kernel_init=conv_kernel_init, name="stem")(x)
        for group in range(3):
            for i in range(blocks_per_group):
                x = BasicBlock(widths[group + 1], stride=2 if (group > 0 and i == 0) else 1,
                               norm=self.norm, activation=self.activation,
                               epsilon=self.epsilon, momentum=self.momentum,
                               name=f"blocks_{group * blocks_per_group + i}",
                               )(x, train, dropout_rate)
        x = make_norm(self.norm, widths[3], self.epsilon, self.momentum, "final_norm")(x, train)
        x = ACTIVATIONS[self.activation](x)
        x = x.mean(axis=(1, 2))  # global average pool: [N, H, W, C] -> [N, C]
        return nn.Dense(self.num_classes, kernel_init=head_kernel_init,
                        bias_init=nn.initializers.zeros, name="head")(x)


def num_parameters(depth: int = 16, widen: int = 4, num_classes: int = 10,
                   in_channels: int = 3) -> int:
    """Closed form of the parameter count (BatchNorm and GroupNorm both have 2C per norm):
    stem 9 * 3 * 16; per block 2 c_in + 9 c_in c_out + 2 c_out + 9 c_out^2 (+ c_in c_out for a
    projection shortcut); final norm 2 * 64k; head 64k * classes + classes."""
    n = (depth - 4) // 6
    widths = (16, 16 * widen, 32 * widen, 64 * widen)
    total = 9 * in_channels * widths[0]
    for group in range(3):
        for i in range(n):
            c_in, c_out = (widths[group] if i == 0 else widths[group + 1]), widths[group + 1]
            projection = (group > 0 and i == 0) or c_in != c_out
            total += 2 * c_in + 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out
            total += c_in * c_out if projection else 0
    return total + 2 * widths[3] + widths[3] * num_classes + num_classes


def _numpy(value: Any) -> np.ndarray:
    """A torch tensor (any device) or array-like -> a float32 numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _flax_path(torch_module_path: str) -> Tuple[str, ...]:
    """'blocks.0.norm1' -> ('blocks_0', 'norm1'): a ModuleList index joins its list's name."""
    path = []
    for part in torch_module_path.split("."):
        if part.isdigit() and path:
            path[-1] = f"{path[-1]}_{part}"
        else:
            path.append(part)
    return tuple(path)


def params_from_torch(state_dict: Mapping[str, Any]) -> Tuple[Dict, Dict]:
    """A ``models.WideResNet`` ``state_dict()`` -> ``(params, batch_stats)`` for this model.

    conv weight [O, I, kh, kw] -> kernel [kh, kw, I, O]; linear weight [out, in] -> kernel
    [in, out]; norm weight -> scale, bias -> bias; running_mean / running_var -> batch_stats
    mean / var (empty for GroupNorm); num_batches_tracked is dropped (it only matters for
    PyTorch's momentum=None cumulative average, unused here). Unknown leaves raise.
    """
    params: Dict[str, Any] = {}
    batch_stats: Dict[str, Any] = {}

    def put(tree: Dict[str, Any], path: Tuple[str, ...], array: np.ndarray) -> None:
        for name in path[:-1]:
            tree = tree.setdefault(name, {})
        tree[path[-1]] = jnp.asarray(array)

    for key, value in state_dict.items():
        module, _, leaf = key.rpartition(".")
        path = _flax_path(module)
        if leaf == "num_batches_tracked":
            continue
        array = _numpy(value)
        if leaf == "running_mean":
            put(batch_stats, path + ("mean",), array)
        elif leaf == "running_var":
            put(batch_stats, path + ("var",), array)
        elif leaf == "weight" and array.ndim == 4:
            put(params, path + ("kernel",), array.transpose(2, 3, 1, 0))
        elif leaf == "weight" and array.ndim == 2:
            put(params, path + ("kernel",), array.T)
        elif leaf == "weight" and array.ndim == 1:
            put(params, path + ("scale",), array)
        elif leaf == "bias":
            put(params, path + ("bias",), array)
        else:
            raise KeyError(f"unexpected key {key!r} (shape {array.shape}) in a WRN state_dict")
    return params, batch_stats
