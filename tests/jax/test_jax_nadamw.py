"""The JAX NAdamW against the published rule (the float64 numpy reference of
``tests/submissions/test_nadamw.py``), and optax's own Nesterov Adam shown to differ from it."""
import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")


def enable_x64():
    """float64 for this block only (jax.enable_x64; jax.experimental's in older JAX)."""
    scoped = getattr(jax, "enable_x64", None)
    if scoped is None:
        from jax.experimental import enable_x64 as scoped
    return scoped()


from submissions.optimizers.jax_nadamw import nadamw  # noqa: E402
from submissions.optimizers.optax_schedules import warmup_cosine, warmup_linear_decay  # noqa
from submissions.optimizers.schedules import warmup_cosine_lr, warmup_linear_decay_lr  # noqa
from tests.submissions.test_nadamw import problem, reference_nadamw  # noqa: F401, E402

B1, B2, EPS, WD = 0.8, 0.99, 1e-8, 0.3


def run(tx_for, p0, grads, lrs):
    """Drive an optax transformation (a fresh one per step's lr) with fixed gradients."""
    p = jax.numpy.asarray(p0)
    state = tx_for(lrs[0]).init(p)
    trajectory = []
    for g, lr in zip(grads, lrs):
        updates, state = tx_for(lr).update(jax.numpy.asarray(g), state, p)
        p = optax.apply_updates(p, updates)
        trajectory.append(np.asarray(p))
    return trajectory


def test_matches_the_published_rule_step_by_step(problem):  # noqa: F811
    p0, grads, lrs = problem
    with enable_x64():
        ours = run(lambda lr: nadamw(lr, B1, B2, EPS, WD), p0, grads, lrs)
    for got, want in zip(ours, reference_nadamw(p0, grads, lrs, B1, B2, EPS, WD)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_optax_nesterov_adam_is_not_the_published_rule(problem):  # noqa: F811
    p0, grads, lrs = problem
    with enable_x64():
        theirs = run(lambda lr: optax.nadamw(lr, B1, B2, EPS, weight_decay=WD), p0, grads, lrs)
    want = reference_nadamw(p0, grads, lrs, B1, B2, EPS, WD)
    assert max(np.abs(a - b).max() for a, b in zip(theirs, want)) > 1e-3


@pytest.mark.parametrize("total", [250, 250 * 1.5, 37])
def test_optax_schedules_are_the_torch_schedules(total):
    cosine = warmup_cosine(0.003, 12, total)
    linear = warmup_linear_decay(0.1, 12, int((total - 12) * 0.9), 0.01)
    with enable_x64():
        for t in range(0, int(total) + 20):
            assert float(cosine(t)) == pytest.approx(warmup_cosine_lr(t, 0.003, 12, total),
                                                     rel=1e-12, abs=1e-15)
            assert float(linear(t)) == pytest.approx(
                warmup_linear_decay_lr(t, 0.1, 12, int((total - 12) * 0.9), 0.01), rel=1e-12,
                abs=1e-15)
