"""NAdamW against the published rule, computed independently in float64 numpy.

The reference below transcribes AlgoPerf's JAX formulation (optax chain: scale_by_nadam ->
add_decayed_weights -> scale by -lr), which is written differently from our in-place torch
code: it forms the whole update direction first and applies it in one subtraction.
"""
import copy

import numpy as np
import pytest
import torch

from submissions.optimizers.nadamw import NAdamW


def reference_nadamw(p0, grads, lrs, b1, b2, eps, wd):
    """Parameters after each step of the published NAdamW rule (float64 numpy)."""
    p = np.array(p0, dtype=np.float64)
    mu = np.zeros_like(p)
    nu = np.zeros_like(p)
    trajectory = []
    for count, (g, lr) in enumerate(zip(grads, lrs), start=1):
        mu = (1 - b1) * g + b1 * mu
        nu = (1 - b2) * g**2 + b2 * nu
        mu_hat = ((1 - b1) * g + b1 * mu) / (1 - b1**count)
        nu_hat = nu / (1 - b2**count)
        direction = mu_hat / (np.sqrt(nu_hat) + eps) + wd * p
        p = p - lr * direction
        trajectory.append(p.copy())
    return trajectory


def run_torch(optimizer_cls, p0, grads, lrs, **kwargs):
    """Drive a torch optimizer with fixed gradients and a per-step lr; float64 throughout."""
    param = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = optimizer_cls([param], lr=lrs[0], **kwargs)
    trajectory = []
    for g, lr in zip(grads, lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        param.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        trajectory.append(param.detach().numpy().copy())
    return trajectory


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(3, 4))
    # Gradients of varied scale and sign, and an lr that warms up then decays, so bias
    # correction, the look-ahead and lr-scaled weight decay all matter.
    grads = [rng.normal(scale=s, size=(3, 4)) for s in (1.0, 0.1, 3.0, 0.5, 1.0, 2.0, 0.01, 1.0)]
    lrs = [0.0, 1e-2, 3e-2, 5e-2, 4e-2, 2e-2, 1e-2, 5e-3]
    return p0, grads, lrs


def test_matches_reference_step_by_step(problem):
    p0, grads, lrs = problem
    b1, b2, eps, wd = 0.8, 0.99, 1e-8, 0.3
    ours = run_torch(NAdamW, p0, grads, lrs, betas=(b1, b2), eps=eps, weight_decay=wd)
    ref = reference_nadamw(p0, grads, lrs, b1, b2, eps, wd)
    for step, (a, b) in enumerate(zip(ours, ref), start=1):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=f"step {step}")


def test_step_one_closed_form():
    # From zero state: p1 = p0 (1 - lr wd) - lr (1 + b1) g / (|g| + eps).
    p0, g, lr, b1, b2, eps, wd = 2.0, -0.5, 0.1, 0.9, 0.999, 1e-8, 0.01
    (p1,) = run_torch(NAdamW, [p0], [[g]], [lr], betas=(b1, b2), eps=eps, weight_decay=wd)
    expected = p0 * (1 - lr * wd) - lr * (1 + b1) * g / (abs(g) + eps)
    assert p1[0] == pytest.approx(expected, rel=1e-14)


def test_state_is_the_first_moment_not_the_lookahead(problem):
    p0, grads, lrs = problem
    b1, b2 = 0.9, 0.999
    param = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = NAdamW([param], lr=1e-2, betas=(b1, b2), weight_decay=0.0)
    m = np.zeros_like(p0)
    for g in grads[:3]:
        param.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        m = b1 * m + (1 - b1) * g
    np.testing.assert_allclose(opt.state[param]["exp_avg"].numpy(), m, rtol=1e-13)
    assert float(opt.state[param]["step"]) == 3


def test_differs_from_torch_nadam(problem):
    # torch.optim.NAdam is Dozat's original rule (momentum-decay schedule), even with
    # decoupled weight decay: a different trajectory from the first step on.
    p0, grads, lrs = problem
    lrs = [1e-2] * len(grads)
    kwargs = dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    ours = run_torch(NAdamW, p0, grads, lrs, **kwargs)
    theirs = run_torch(torch.optim.NAdam, p0, grads, lrs, decoupled_weight_decay=True, **kwargs)
    gaps = [np.abs(a - b).max() for a, b in zip(ours, theirs)]
    assert min(gaps) > 1e-4, gaps


def test_differs_from_adamw(problem):
    p0, grads, lrs = problem
    lrs = [1e-2] * len(grads)
    kwargs = dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    ours = run_torch(NAdamW, p0, grads, lrs, **kwargs)
    adamw = run_torch(torch.optim.AdamW, p0, grads, lrs, **kwargs)
    assert np.abs(ours[0] - adamw[0]).max() > 1e-3


def test_several_params_skip_missing_grads_and_round_trip_state_dict():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    frozen = torch.nn.Parameter(torch.ones(2))  # never gets a gradient
    opt = NAdamW(list(model.parameters()) + [frozen], lr=1e-2)
    x = torch.randn(5, 4)
    for _ in range(2):
        opt.zero_grad()
        model(x).square().sum().backward()
        opt.step()
    assert frozen not in opt.state and torch.equal(frozen, torch.ones(2))

    clone = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    clone.load_state_dict(model.state_dict())
    opt2 = NAdamW(list(clone.parameters()) + [torch.nn.Parameter(torch.ones(2))], lr=1e-2)
    # deepcopy, as a checkpoint does: state_dict() hands out the live state tensors.
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    for m, o in ((model, opt), (clone, opt2)):
        o.zero_grad()
        m(x).square().sum().backward()
        o.step()
    for a, b in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("kwargs", [dict(lr=-1.0), dict(betas=(1.0, 0.9)),
                                    dict(betas=(0.9, -0.1)), dict(eps=-1.0),
                                    dict(weight_decay=-0.1)])
def test_rejects_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        NAdamW([torch.nn.Parameter(torch.zeros(1))], **kwargs)
