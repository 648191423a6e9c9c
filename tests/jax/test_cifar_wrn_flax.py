"""Flax WRN (workloads/cifar_wrn/flax_models.py) against the PyTorch WRN (models.py), exactly.

Same weights (PyTorch -> ``params_from_torch``) must give the same logits and the same updated
BatchNorm running statistics to 1e-5, for the tiny tier, WRN-16-4 and its variants; each kind
of mistake a port can make (epsilon, activation, running variance, padding) must show above
that tolerance. Light: batch 2, eager applies, no random init of a full model.
``pytest -s`` prints the measured max |differences|.
"""
import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402
from flax import linen as nn  # noqa: E402
from flax.errors import InvalidRngError  # noqa: E402
from flax.traverse_util import flatten_dict  # noqa: E402

from workloads.cifar_wrn import definition  # noqa: E402
from workloads.cifar_wrn import flax_models as fm  # noqa: E402
from workloads.cifar_wrn.models import WideResNet as TorchWideResNet  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)


def arch(defn) -> dict:
    return dict(depth=defn.depth, widen=defn.widen, activation=defn.activation, norm=defn.norm)


TINY = arch(definition.CifarWrnTinyDefinition)
# (name, architecture, batch): the model of every workload; the tiny tier's shapes stand in
# for "any depth", and GELU (no workload uses it) is checked in the activation test below.
CONFIGS = [
    ("tiny", TINY, 2),
    ("wrn_16_4", arch(definition.CifarWrnDefinition), 2),
    ("wrn_16_4_silu", arch(definition.CifarWrnSiluDefinition), 2),
    ("wrn_16_4_groupnorm", arch(definition.CifarWrnGroupNormDefinition), 2),
]
IDS = [c[0] for c in CONFIGS]

def torch_model(cfg: dict, seed: int = 0) -> "torch.nn.Module":
    """The PyTorch WRN with every leaf moved off its init value, so a mapping that swaps or
    drops a leaf (scale/bias, mean/var, the zero head bias) cannot pass by accident."""
    torch.manual_seed(seed)
    model = TorchWideResNet(**cfg)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        model.head.bias.uniform_(-0.1, 0.1)
    return model


def variables_from(model: "torch.nn.Module") -> dict:
    params, batch_stats = fm.params_from_torch(model.state_dict())
    return {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}


def inputs(batch: int, seed: int = 0, scale: float = 1.0):
    """(NHWC for Flax, NCHW for PyTorch): standard-normal like standardised images."""
    x = scale * np.random.default_rng(seed).standard_normal((batch, 32, 32, 3))
    x = x.astype(np.float32)
    return jnp.asarray(x), torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def torch_forward(model, x, train: bool, dropout_rate: float = 0.0) -> np.ndarray:
    model.train(train)
    with torch.no_grad():
        return model(x, dropout_rate=dropout_rate).numpy()


def max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def report(what: str, value: float) -> None:
    print(f"{what}: max |difference| {value:.3g}")  # shown with pytest -s


def shapes(tree) -> dict:
    return {path: tuple(leaf.shape) for path, leaf in flatten_dict(tree, sep="/").items()}


# --- parity ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,cfg,batch", CONFIGS, ids=IDS)
def test_eval_logits_equal_pytorch(name, cfg, batch):
    model = torch_model(cfg)
    x, x_torch = inputs(batch)
    expected = torch_forward(model, x_torch, train=False)
    got = fm.WideResNet(**cfg).apply(variables_from(model), x, train=False)
    assert got.shape == (batch, 10)
    report(f"eval/{name}", max_diff(got, expected))
    np.testing.assert_allclose(got, expected, **TOL)


@pytest.mark.parametrize("name,cfg,batch", CONFIGS, ids=IDS)
def test_train_logits_and_running_statistics_equal_pytorch(name, cfg, batch):
    model = torch_model(cfg)
    variables = variables_from(model)  # before PyTorch's forward updates its buffers
    x, x_torch = inputs(batch, seed=1)
    expected = torch_forward(model, x_torch, train=True)
    got, updates = fm.WideResNet(**cfg).apply(variables, x, train=True,
                                              mutable=["batch_stats"])
    report(f"train/{name}", max_diff(got, expected))
    np.testing.assert_allclose(got, expected, **TOL)
    _, torch_stats = fm.params_from_torch(model.state_dict())  # the updated running stats
    if cfg["norm"] == "group":
        assert updates == {} and torch_stats == {}
        return
    new = flatten_dict(updates["batch_stats"], sep="/")
    old = flatten_dict(variables["batch_stats"], sep="/")
    want = flatten_dict(torch_stats, sep="/")
    assert new.keys() == want.keys()
    for path in new:
        assert max_diff(new[path], old[path]) > 1e-3, path  # they did move
        np.testing.assert_allclose(new[path], want[path], **TOL, err_msg=path)
    report(f"stats/{name}", max(max_diff(new[p], want[p]) for p in new))


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_epsilon_matters_and_matches_on_low_variance_inputs(norm):
    """With unit-variance activations an epsilon of 1e-6 instead of 1e-5 moves the logits by
    ~2e-6, under the tolerance (measured: Flax's own GroupNorm default passes the plain parity
    test). Inputs scaled by 1e-3 make the first norm's variance ~1e-6, where epsilon dominates:
    there the right epsilon still matches and Flax's default is far off."""
    cfg = {**TINY, "norm": norm}
    model = torch_model(cfg)
    variables = variables_from(model)
    x, x_torch = inputs(2, seed=2, scale=1e-3)
    expected = torch_forward(model, x_torch, train=True)
    right = fm.WideResNet(**cfg).apply(variables, x, train=True, mutable=["batch_stats"])[0]
    np.testing.assert_allclose(right, expected, **TOL)
    flax_default = fm.WideResNet(**cfg, epsilon=1e-6).apply(variables, x, train=True,
                                                            mutable=["batch_stats"])[0]
    report(f"mismatch/epsilon 1e-6 low-variance/{norm}", max_diff(flax_default, expected))
    assert max_diff(flax_default, expected) > 100 * TOL["atol"]


def test_the_other_activation_is_caught():
    cfg = arch(definition.CifarWrnSiluDefinition)
    model = torch_model(cfg)
    variables = variables_from(model)
    x, x_torch = inputs(2)
    expected = torch_forward(model, x_torch, train=False)
    relu = fm.WideResNet(**{**cfg, "activation": "relu"}).apply(variables, x, train=False)
    report("mismatch/relu for silu", max_diff(relu, expected))
    assert max_diff(relu, expected) > 100 * TOL["atol"]


def test_gelu_is_pytorchs_exact_form():
    """torch.nn.GELU() is x Phi(x) (erf); Flax's nn.gelu defaults to the tanh approximation,
    up to ~5e-4 apart (|x| ~ 2), which a WRN's logits would show at a few 1e-5. The model
    looks activations up in ACTIVATIONS, as the SiLU parity tests exercise."""
    z = np.linspace(-6, 6, 1201, dtype=np.float32)
    expected = torch.nn.GELU()(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(fm.ACTIVATIONS["gelu"](z), expected, **TOL)
    report("mismatch/tanh gelu (elementwise)", max_diff(nn.gelu(z), expected))
    assert max_diff(nn.gelu(z), expected) > 10 * TOL["atol"]


def test_stock_flax_batchnorm_would_drift_from_pytorch_running_variance():
    """flax.linen.BatchNorm averages the biased batch variance, PyTorch the unbiased one
    (x m / (m - 1)); ours matches PyTorch. Same normalisation in the forward pass."""
    # [2, 8, 8, 256]: the final norm of WRN-16-4 at batch 2 (its ops are compiled already).
    h = 2.0 * np.random.default_rng(3).standard_normal((2, 8, 8, 256)).astype(np.float32) + 1.0
    bn = torch.nn.BatchNorm2d(256).train()
    with torch.no_grad():
        expected = bn(torch.from_numpy(h.transpose(0, 3, 1, 2).copy())).numpy()
    expected = expected.transpose(0, 2, 3, 1)
    # Both modules' variables at their init values (what init gives), built without an init.
    c = h.shape[-1]
    variables = {"params": {"scale": jnp.ones(c), "bias": jnp.zeros(c)},
                 "batch_stats": {"mean": jnp.zeros(c), "var": jnp.ones(c)}}
    y, upd = fm.BatchNorm().apply(variables, h, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(y, expected, **TOL)
    np.testing.assert_allclose(upd["batch_stats"]["mean"], bn.running_mean.numpy(), **TOL)
    np.testing.assert_allclose(upd["batch_stats"]["var"], bn.running_var.numpy(), **TOL)
    stock = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
    y, upd = stock.apply(variables, h, mutable=["batch_stats"])
    np.testing.assert_allclose(y, expected, **TOL)
    # 0.1 * var / 127 with var ~4: ~3e-3 (m = 2 * 8 * 8 = 128).
    assert max_diff(upd["batch_stats"]["var"], bn.running_var.numpy()) > 1e-3


def test_group_norm_matches_pytorch_and_flax_with_its_epsilon():
    """Ours equals PyTorch's nn.GroupNorm(16, C), and flax.linen.GroupNorm once its epsilon is
    set to PyTorch's 1e-5 (its default, 1e-6, is the one the low-variance test catches)."""
    h = 2.0 * np.random.default_rng(6).standard_normal((2, 8, 8, 256)).astype(np.float32) + 1.0
    gn = torch.nn.GroupNorm(16, 256)
    with torch.no_grad():
        gn.weight.uniform_(0.5, 1.5)
        gn.bias.uniform_(-0.2, 0.2)
        expected = gn(torch.from_numpy(h.transpose(0, 3, 1, 2).copy())).numpy()
    expected = expected.transpose(0, 2, 3, 1)
    variables = {"params": {"scale": jnp.asarray(gn.weight.detach().numpy()),
                            "bias": jnp.asarray(gn.bias.detach().numpy())}}
    ours = fm.GroupNorm(num_groups=16).apply(variables, h, train=True)
    np.testing.assert_allclose(ours, expected, **TOL)
    stock = nn.GroupNorm(num_groups=16, epsilon=1e-5).apply(variables, h)
    np.testing.assert_allclose(stock, expected, **TOL)


def test_same_padding_would_shift_a_strided_conv():
    """PyTorch pads a 3x3 stride-2 conv by 1 on each side; Flax 'SAME' pads (0, 1) on an even
    input, a different sampling grid. The model uses explicit padding."""
    conv = torch.nn.Conv2d(16, 32, 3, 2, 1, bias=False)
    h = np.random.default_rng(4).standard_normal((2, 32, 32, 16)).astype(np.float32)
    with torch.no_grad():
        expected = conv(torch.from_numpy(h.transpose(0, 3, 1, 2).copy())).numpy()
    expected = expected.transpose(0, 2, 3, 1)
    kernel = {"params": {"kernel": conv.weight.detach().numpy().transpose(2, 3, 1, 0)}}
    explicit = nn.Conv(32, (3, 3), (2, 2), padding=((1, 1), (1, 1)), use_bias=False)
    np.testing.assert_allclose(explicit.apply(kernel, h), expected, **TOL)
    same = nn.Conv(32, (3, 3), (2, 2), padding="SAME", use_bias=False)
    assert max_diff(same.apply(kernel, h), expected) > 0.1


# --- dropout ---------------------------------------------------------------------------------
def test_dropout_sits_where_pytorch_has_it():
    """At rate 1 both frameworks zero the whole conv1 branch input of conv2 (no randomness), so
    train-mode outputs and running statistics must still agree exactly; at rate 0.5 the masks
    differ by construction, so only Flax's own properties are checked."""
    model = torch_model(TINY)
    variables = variables_from(model)
    x, x_torch = inputs(2, seed=5)
    flax_model = fm.WideResNet(**TINY)
    expected = torch_forward(model, x_torch, train=True, dropout_rate=1.0)
    got, upd = flax_model.apply(variables, x, train=True, dropout_rate=1.0,
                                mutable=["batch_stats"])
    report("train/tiny dropout 1.0", max_diff(got, expected))
    np.testing.assert_allclose(got, expected, **TOL)
    _, torch_stats = fm.params_from_torch(model.state_dict())
    for path, leaf in flatten_dict(upd["batch_stats"], sep="/").items():
        np.testing.assert_allclose(leaf, flatten_dict(torch_stats, sep="/")[path], **TOL)

    def train(rate, seed):
        rngs = {"dropout": jax.random.key(seed, impl="rbg")}  # rbg: fast to compile on CPU
        return flax_model.apply(variables, x, train=True, dropout_rate=rate, rngs=rngs,
                                mutable=["batch_stats"])[0]

    a = train(0.5, 0)
    np.testing.assert_array_equal(a, train(0.5, 0))  # the 'dropout' rng decides the mask
    assert max_diff(a, train(0.5, 1)) > 1e-3
    assert max_diff(a, train(0.0, 0)) > 1e-3
    evaluation = flax_model.apply(variables, x, train=False)
    np.testing.assert_array_equal(flax_model.apply(variables, x, train=False, dropout_rate=0.5),
                                  evaluation)
    with pytest.raises(InvalidRngError, match="dropout"):  # p > 0 and no rng
        flax_model.apply(variables, x, train=True, dropout_rate=0.5, mutable=["batch_stats"])


# --- parameter tree and init -----------------------------------------------------------------
TINY_TREE = {
    "stem/kernel": (3, 3, 3, 16),
    "blocks_0/norm1/scale": (16,), "blocks_0/norm1/bias": (16,),
    "blocks_0/conv1/kernel": (3, 3, 16, 16),
    "blocks_0/norm2/scale": (16,), "blocks_0/norm2/bias": (16,),
    "blocks_0/conv2/kernel": (3, 3, 16, 16),
    "blocks_1/norm1/scale": (16,), "blocks_1/norm1/bias": (16,),
    "blocks_1/conv1/kernel": (3, 3, 16, 32),
    "blocks_1/norm2/scale": (32,), "blocks_1/norm2/bias": (32,),
    "blocks_1/conv2/kernel": (3, 3, 32, 32),
    "blocks_1/shortcut/kernel": (1, 1, 16, 32),
    "blocks_2/norm1/scale": (32,), "blocks_2/norm1/bias": (32,),
    "blocks_2/conv1/kernel": (3, 3, 32, 64),
    "blocks_2/norm2/scale": (64,), "blocks_2/norm2/bias": (64,),
    "blocks_2/conv2/kernel": (3, 3, 64, 64),
    "blocks_2/shortcut/kernel": (1, 1, 32, 64),
    "final_norm/scale": (64,), "final_norm/bias": (64,),
    "head/kernel": (64, 10), "head/bias": (10,),
}


def abstract_init(cfg: dict, batch: int = 1) -> dict:
    """The variables' shapes without running the init (no compile, no random draws)."""
    x = jnp.zeros((batch, 32, 32, 3), jnp.float32)
    return jax.eval_shape(lambda: fm.WideResNet(**cfg).init(jax.random.key(0), x, train=False))


def test_tiny_parameter_tree_is_the_documented_one():
    variables = abstract_init(TINY)
    assert shapes(variables["params"]) == TINY_TREE
    norms = {p.rsplit("/", 1)[0] for p in TINY_TREE if p.endswith("/scale")}
    assert shapes(variables["batch_stats"]) == {
        f"{n}/{s}": TINY_TREE[f"{n}/scale"] for n in norms for s in ("mean", "var")}
    assert sum(np.prod(s) for s in TINY_TREE.values()) == 77_850 == fm.num_parameters(10, 1)
    group = abstract_init({**TINY, "norm": "group"})
    assert set(group) == {"params"} and shapes(group["params"]) == TINY_TREE


@pytest.mark.parametrize("name,cfg,batch", CONFIGS, ids=IDS)
def test_tree_matches_the_pytorch_model(name, cfg, batch):
    """Flax init and the converted PyTorch state dict have the same paths and shapes."""
    variables = abstract_init(cfg)
    converted = variables_from(TorchWideResNet(**cfg))
    assert jax.tree.map(lambda a: a.shape, variables) == jax.tree.map(jnp.shape, converted)
    count = sum(a.size for a in jax.tree.leaves(variables["params"]))
    assert count == fm.num_parameters(cfg["depth"], cfg["widen"])
    if cfg["depth"] == 16 and cfg["widen"] == 4:
        assert count == 2_748_890  # README / models.py


def test_init_matches_pytorch_reset_parameters_in_distribution(monkeypatch):
    """The initializers, sampled, have PyTorch's distributions, and the model uses them for
    every conv and the head. (Norms start at scale 1, bias 0 and the head bias at 0 by their
    literal initializers.) No random init of the whole model: seconds of compiling on CPU."""
    key = jax.random.key(0, impl="rbg")  # rbg: several times faster to compile than threefry
    kernel = np.asarray(fm.conv_kernel_init(key, (3, 3, 32, 64), jnp.float32))
    std = np.sqrt(2.0 / (3 * 3 * 64))  # He normal with fan-out = kh kw c_out, untruncated
    assert kernel.std() == pytest.approx(std, rel=0.05)
    assert abs(kernel.mean()) < 0.05 * std
    assert np.abs(kernel).max() > 3 * std  # jax's he_normal truncates at 2 sd
    kernel = np.asarray(fm.head_kernel_init(key, (256, 10), jnp.float32))
    bound = 1 / np.sqrt(256)  # PyTorch Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert np.abs(kernel).max() <= bound and kernel.min() < -0.9 * bound
    assert kernel.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)

    # Wiring: spies record which shapes each initializer is asked for while init is traced
    # (jax.eval_shape: no compile, no values).
    calls = {"conv": [], "head": []}

    def spy(kind):
        def init(key, shape, dtype=jnp.float32):
            calls[kind].append(tuple(shape))
            return jnp.zeros(shape, dtype)
        return init

    monkeypatch.setattr(fm, "conv_kernel_init", spy("conv"))
    monkeypatch.setattr(fm, "head_kernel_init", spy("head"))
    abstract_init(TINY)
    assert sorted(calls["conv"]) == sorted(
        shape for path, shape in TINY_TREE.items() if path.endswith("kernel")
        and not path.startswith("head/"))
    assert calls["head"] == [TINY_TREE["head/kernel"]]
