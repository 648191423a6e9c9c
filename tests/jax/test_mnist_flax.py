"""Flax MNIST MLP (workloads/mnist/flax_models.py) against the PyTorch MLP, exactly."""
import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402
from flax import linen as nn  # noqa: E402
from flax.traverse_util import flatten_dict  # noqa: E402

from workloads.mnist import flax_models as fm  # noqa: E402
from workloads.mnist.pytorch import MLP as TorchMLP  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)
TREE = {"Dense_0/kernel": (784, 128), "Dense_0/bias": (128,),
        "Dense_1/kernel": (128, 10), "Dense_1/bias": (10,)}


def pair(seed: int = 0):
    torch.manual_seed(seed)
    model = TorchMLP()
    params, batch_stats = fm.params_from_torch(model.state_dict())
    assert batch_stats == {}
    return model, {"params": params}


def inputs(batch: int = 8, seed: int = 0):
    x = np.random.default_rng(seed).standard_normal((batch, 28, 28)).astype(np.float32)
    return jnp.asarray(x), torch.from_numpy(x)


def max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@pytest.mark.parametrize("train", [False, True])
def test_logits_equal_pytorch(train):
    model, variables = pair()
    x, x_torch = inputs()
    model.train(train)
    with torch.no_grad():
        expected = model(x_torch).numpy()
    logits, updates = fm.MLP().apply(variables, x, train=train, dropout_rate=0.1,
                                     mutable=["batch_stats"])
    assert logits.shape == (8, 10) and updates == {}  # no batch statistics, no dropout
    print(f"train={train}: max |difference| {max_diff(logits, expected):.3g}")
    np.testing.assert_allclose(logits, expected, **TOL)


def test_parameter_tree_is_algoperfs():
    x = jnp.zeros((1, 28, 28), jnp.float32)
    variables = jax.eval_shape(lambda: fm.MLP().init(jax.random.key(0), x, train=False))
    assert set(variables) == {"params"}
    got = {p: tuple(v.shape) for p, v in flatten_dict(variables["params"], sep="/").items()}
    assert got == TREE
    assert sum(np.prod(s) for s in TREE.values()) == 101_770
    _, converted = pair()
    assert jax.tree.map(lambda a: a.shape, variables) == jax.tree.map(jnp.shape, converted)


def test_init_matches_pytorch_linear_default_in_distribution():
    x = jnp.zeros((1, 28, 28), jnp.float32)
    params = fm.MLP().init(jax.random.key(0, impl="rbg"), x, train=False)["params"]
    for layer, fan_in in (("Dense_0", 784), ("Dense_1", 128)):
        bound = 1 / np.sqrt(fan_in)  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
        for name in ("kernel", "bias"):
            leaf = np.asarray(params[layer][name])
            assert np.abs(leaf).max() <= bound
            assert leaf.min() < -0.5 * bound and leaf.max() > 0.5 * bound  # symmetric
        kernel = np.asarray(params[layer]["kernel"])
        assert kernel.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)


def test_mismatches_are_caught():
    """A ReLU hidden layer, or log-softmax outputs (older AlgoPerf Flax MNIST models returned
    log_softmax(logits), which the loss cannot tell apart but the logits can), exceed 1e-5."""
    model, variables = pair()
    x, x_torch = inputs()
    with torch.no_grad():
        expected = model.eval()(x_torch).numpy()
    p = variables["params"]
    flat = x.reshape(8, -1)
    relu = nn.relu(flat @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
    relu = relu @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
    assert max_diff(relu, expected) > 100 * TOL["atol"]
    log_softmax = jax.nn.log_softmax(fm.MLP().apply(variables, x, train=False))
    assert max_diff(log_softmax, expected) > 100 * TOL["atol"]


def test_unknown_state_dict_keys_raise():
    state = TorchMLP().state_dict()
    state["net.5.weight"] = state["net.3.weight"]
    with pytest.raises(KeyError, match="net.5.weight"):
        fm.params_from_torch(state)
