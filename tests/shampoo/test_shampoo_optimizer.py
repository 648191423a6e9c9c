"""Shampoo's mechanics: blocking, the root schedule, grafting, the first-order fallback,
robustness to degenerate gradients, checkpoints, argument errors."""
import copy
import io

import numpy as np
import pytest
import torch

from submissions.optimizers.nadamw import NAdamW
from submissions.optimizers.shampoo import Shampoo, block_slices, merge_dims

DT = torch.float64


def _grads(shape, steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=gen, dtype=DT) for _ in range(steps)]


def _param(shape, seed=0):
    gen = torch.Generator().manual_seed(seed + 100)
    return torch.nn.Parameter(torch.randn(*shape, generator=gen, dtype=DT))


def _run(opt, params, grads_per_param):
    for grads in zip(*grads_per_param):
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()


def test_merge_and_block_shapes():
    assert merge_dims((64, 64, 3, 3), 1024) == (64, 576)
    assert merge_dims((1, 196, 384), 1024) == (196, 384)
    assert merge_dims((10, 64), 1024) == (640,)
    assert merge_dims((1, 1), 1024) == ()
    assert block_slices((1152, 384), 1024) == [(slice(0, 1024), slice(0, 384)),
                                               (slice(1024, 1152), slice(0, 384))]
    assert len(block_slices((2048, 2048), 1024)) == 4


def test_blocks_are_independent_shampoo_problems():
    """A (6, 5) parameter with max_dim 3 is four blocks (3x3, 3x2, 3x3, 3x2): its trajectory
    (Adam grafting, momentum, weight decay) equals four separate Shampoo parameters."""
    kw = dict(lr=0.05, betas=(0.9, 0.95), epsilon=1e-6, momentum=0.9, weight_decay=0.01,
              precondition_frequency=2, max_preconditioner_dim=3, use_nadam=True)
    whole = _param((6, 5))
    grads = _grads((6, 5), 7)
    index = block_slices((6, 5), 3)
    parts = [torch.nn.Parameter(whole.detach()[i].clone()) for i in index]
    _run(Shampoo([whole], **kw), [whole], [grads])
    _run(Shampoo(parts, **kw), parts, [[g[i] for g in grads] for i in index])
    for i, part in zip(index, parts):
        torch.testing.assert_close(whole.detach()[i], part.detach(), rtol=1e-12, atol=1e-14)
    # Negative check: one unblocked (6, 5) Shampoo is a different optimizer.
    single = _param((6, 5))
    _run(Shampoo([single], **dict(kw, max_preconditioner_dim=6)), [single], [grads])
    assert (single.detach() - whole.detach()).abs().max() > 1e-4


def test_roots_change_only_every_k_steps():
    p = _param((4, 3))
    opt = Shampoo([p], precondition_frequency=3, max_preconditioner_dim=4)
    history = []
    for g in _grads((4, 3), 9):
        p.grad = g
        opt.step()
        history.append([r.clone() for r in opt.state[p]["roots"][0]])
    changed = [t + 1 for t in range(1, 9)
               if any(not torch.equal(a, b) for a, b in zip(history[t], history[t - 1]))]
    assert changed == [3, 6, 9]
    assert all(torch.equal(r, torch.eye(r.shape[0], dtype=DT)) for r in history[1])


@pytest.mark.parametrize("start", [6, 10])
def test_before_start_step_adam_grafting_is_nadamw(start):
    """momentum 0, use_nadam, Adam grafting: until the start step every step is AlgoPerf's
    NAdamW (the project's NAdamW as an independent reference); the first Shampoo step
    departs from it."""
    betas, wd, lr = (0.9, 0.99), 0.1, 0.01
    shapes = [(6, 5), (5,)]
    ps = [_param(s, k) for k, s in enumerate(shapes)]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    shampoo = Shampoo(ps, lr=lr, betas=betas, weight_decay=wd, epsilon=1e-8, use_nadam=True,
                      precondition_frequency=start // 2, start_preconditioning_step=start,
                      max_preconditioner_dim=6, precondition_1d=True, grafting_epsilon=1e-8)
    nadamw = NAdamW(qs, lr=lr, betas=betas, eps=1e-8, weight_decay=wd)
    grads = [_grads(s, start, seed=k) for k, s in enumerate(shapes)]
    _run(shampoo, ps, [g[:start - 1] for g in grads])
    _run(nadamw, qs, [g[:start - 1] for g in grads])
    for p, q in zip(ps, qs):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-12, atol=1e-14)
    _run(shampoo, ps, [g[start - 1:] for g in grads])
    _run(nadamw, qs, [g[start - 1:] for g in grads])
    assert (ps[0].detach() - qs[0].detach()).abs().max() > 1e-6


def test_before_start_step_sgd_grafting_is_nesterov_sgd():
    """b1 = 0, SGD grafting, Nesterov momentum: before the start step, torch.optim.SGD."""
    p = _param((4, 4))
    q = torch.nn.Parameter(p.detach().clone())
    shampoo = Shampoo([p], lr=0.1, betas=(0.0, 0.99), momentum=0.9, nesterov=True,
                      weight_decay=1e-3, grafting="sgd", precondition_frequency=8)
    sgd = torch.optim.SGD([q], lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    grads = _grads((4, 4), 7)
    _run(shampoo, [p], [grads])
    _run(sgd, [q], [grads])
    torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-12, atol=1e-14)


def test_grafted_step_has_the_grafted_norm_per_block():
    """After the start step each block's step has the Adam direction's norm: at t = 1 (b1 =
    0) Adam's direction is g / (|g| + eps), so each block moves by ~sqrt(block size)."""
    p = _param((6, 5))
    w0 = p.detach().clone()
    opt = Shampoo([p], lr=1.0, betas=(0.0, 0.99), epsilon=1e-8, precondition_frequency=1,
                  max_preconditioner_dim=3, grafting_epsilon=1e-8)
    g = _grads((6, 5), 1)[0]
    p.grad = g
    opt.step()
    for i in block_slices((6, 5), 3):
        adam = g[i] / (g[i].abs() + 1e-8)
        step = (w0 - p.detach())[i]
        assert torch.linalg.vector_norm(step).item() == pytest.approx(
            torch.linalg.vector_norm(adam).item(), rel=1e-10)
        assert not torch.allclose(step, adam)  # the direction is Shampoo's, not Adam's


def test_vectors_and_huge_parameters_take_the_fallback():
    """Without precondition_1d, a vector follows the grafted optimizer (here NAdamW) at every
    step; so does a matrix with a dim >= max_dim_for_shampoo."""
    kw = dict(lr=0.01, betas=(0.9, 0.99), epsilon=1e-8, use_nadam=True,
              precondition_frequency=2, weight_decay=0.05)
    for shape, extra in [((7,), {}), ((3, 8), {"max_dim_for_shampoo": 8})]:
        p = _param(shape)
        q = torch.nn.Parameter(p.detach().clone())
        grads = _grads(shape, 8)
        opt = Shampoo([p], **kw, **extra)
        _run(opt, [p], [grads])
        _run(NAdamW([q], lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.05), [q],
             [grads])
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-12, atol=1e-14)
        assert "factors" not in opt.state[p]


@pytest.mark.parametrize("dtype,eps", [(torch.float32, 1e-12), (torch.float64, 0.0)])
def test_zero_and_rank_one_gradients_give_no_nan(dtype, eps):
    p = torch.nn.Parameter(torch.randn(8, 6, dtype=dtype))
    opt = Shampoo([p], lr=0.1, epsilon=eps, precondition_frequency=2, momentum=0.9,
                  max_preconditioner_dim=8)
    u, v = torch.randn(8, 1, dtype=dtype), torch.randn(1, 6, dtype=dtype)
    for t in range(8):
        p.grad = torch.zeros_like(p) if t < 3 else (u @ v) * (10.0 ** (t - 5))
        opt.step()
        assert torch.isfinite(p).all(), t
        assert all(torch.isfinite(r).all() for r in opt.state[p]["roots"][0])


def test_float32_eigh_failure_falls_back_to_float64(monkeypatch):
    """When float32 eigh raises, the root is computed in float64 and cast back."""
    real_eigh = torch.linalg.eigh
    dtypes = []

    def flaky(a, *args, **kwargs):
        dtypes.append(a.dtype)
        if a.dtype == torch.float32:
            raise torch.linalg.LinAlgError("simulated failure")
        return real_eigh(a, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigh", flaky)
    p = torch.nn.Parameter(torch.randn(4, 3))
    opt = Shampoo([p], precondition_frequency=1, max_preconditioner_dim=4)
    p.grad = torch.randn(4, 3)
    opt.step()
    assert dtypes == [torch.float32, torch.float64] * 2
    assert all(r.dtype == torch.float32 and not torch.equal(r, torch.eye(r.shape[0]))
               for r in opt.state[p]["roots"][0])


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(),
                               torch.nn.Linear(5, 3)).to(DT)


def _train(model, opt, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(16, 6, generator=gen, dtype=DT), torch.randn(16, 3, generator=gen,
                                                                        dtype=DT)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def test_save_and_load_mid_interval_resumes_the_same_trajectory():
    """Checkpoint at step 7 (roots from step 5, next refresh at 10), reload into a fresh
    optimizer and model: the next 6 steps are bit-identical to not stopping."""
    kw = dict(lr=0.05, betas=(0.9, 0.99), epsilon=1e-8, momentum=0.5, weight_decay=0.01,
              precondition_frequency=5, max_preconditioner_dim=5, use_nadam=True,
              precondition_1d=True)
    model = _model()
    opt = Shampoo(model.parameters(), **kw)
    _train(model, opt, 7, seed=1)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    _train(model, opt, 6, seed=2)

    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = _model()
    resumed.load_state_dict(saved["model"])
    opt2 = Shampoo(resumed.parameters(), **kw)
    opt2.load_state_dict(saved["opt"])
    _train(resumed, opt2, 6, seed=2)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    # Negative check: a fresh optimizer (no saved state) does not resume the trajectory.
    fresh = _model()
    fresh.load_state_dict(saved["model"])
    _train(fresh, Shampoo(fresh.parameters(), **kw), 6, seed=2)
    assert any(not torch.allclose(a, b) for a, b in zip(model.parameters(),
                                                       fresh.parameters()))


@pytest.mark.parametrize("kwargs,message", [
    ({"precondition_frequency": 10, "start_preconditioning_step": 5},
     "start_preconditioning_step 5"),
    ({"precondition_frequency": 0}, "precondition_frequency 0"),
    ({"grafting": "adagrad"}, "grafting 'adagrad'"),
    ({"betas": (0.9, 0.0)}, "betas"),
    ({"max_preconditioner_dim": 0}, "max_preconditioner_dim 0"),
    ({"epsilon": -1.0}, "epsilon -1.0"),
])
def test_bad_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Shampoo([torch.nn.Parameter(torch.zeros(2, 2))], **kwargs)


def test_copy_of_state_is_independent_of_the_optimizer():
    """state_dict() holds the factors and roots by block (a plain deepcopy round-trips)."""
    model = _model()
    opt = Shampoo(model.parameters(), precondition_frequency=2, max_preconditioner_dim=5)
    _train(model, opt, 3, seed=0)
    sd = copy.deepcopy(opt.state_dict())
    state = sd["state"][0]
    assert set(state) >= {"step", "exp_avg", "graft_exp_avg_sq", "factors", "roots"}
    assert [tuple(f.shape) for f in state["factors"][0]] == [(5, 5), (5, 5)]
    assert int(state["step"]) == 3
    assert np.isfinite(state["roots"][0][0].numpy()).all()
