"""``workloads.flax_dropout.Dropout``: flax.linen.Dropout's output for a float rate, and a rate
that is a tracer (a jitted step's argument, as AlgoPerf's jit baselines pass it)."""
import numpy as np
import pytest

jax = pytest.importorskip("jax")
flax_linen = pytest.importorskip("flax.linen")

from workloads.flax_dropout import Dropout  # noqa: E402

X = np.linspace(1.0, 2.0, 4000, dtype=np.float32).reshape(40, 100)
KEY = {"dropout": jax.random.PRNGKey(3)}


def test_a_float_rate_gives_flax_linens_mask_and_scale():
    ours = Dropout(0.3).apply({}, X, deterministic=False, rngs=KEY)
    theirs = flax_linen.Dropout(0.3).apply({}, X, deterministic=False, rngs=KEY)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    kept = np.asarray(ours) != 0
    np.testing.assert_allclose(np.asarray(ours)[kept], X[kept] / 0.7, rtol=1e-6)
    assert 0.25 < 1 - kept.mean() < 0.35


def test_a_traced_rate_works_under_jit_and_equals_the_float_one():
    @jax.jit
    def drop(x, rate):
        return Dropout(rate).apply({}, x, deterministic=False, rngs=KEY)
    # The same mask; the kept values differ by float32's 1 - 0.3 vs Python's (one ulp).
    traced = np.asarray(drop(X, 0.3))
    python = np.asarray(Dropout(0.3).apply({}, X, deterministic=False, rngs=KEY))
    np.testing.assert_array_equal(traced != 0, python != 0)
    np.testing.assert_allclose(traced, python, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(drop(X, 0.0)), X)  # traced zero: every unit kept
    assert not np.asarray(drop(X, 1.0)).any()                    # rate 1: every unit dropped
    grad = jax.grad(lambda x: drop(x, 1.0).sum())(X)
    assert np.isfinite(np.asarray(grad)).all() and not np.asarray(grad).any()
    with pytest.raises(Exception):  # flax's own Dropout cannot take a tracer
        jax.jit(lambda x, r: flax_linen.Dropout(r).apply({}, x, deterministic=False,
                                                         rngs=KEY))(X, 0.3)


def test_no_mask_when_deterministic_or_a_python_zero():
    np.testing.assert_array_equal(np.asarray(Dropout(0.5).apply({}, X, deterministic=True)), X)
    np.testing.assert_array_equal(np.asarray(Dropout(0.0).apply({}, X, deterministic=False)), X)
