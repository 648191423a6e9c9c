"""Shampoo's update against independent dense computations (float64): Kronecker roots by
scipy, the one-step SVD closed form, full-matrix AdaGrad, rotation equivariance."""
import numpy as np
import pytest
import torch
from scipy.linalg import fractional_matrix_power

from submissions.optimizers.shampoo import Shampoo, matrix_inverse_root

DT = torch.float64


def _param(shape, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Parameter(torch.randn(*shape, dtype=DT))


def _step(opt, p, grad):
    p.grad = grad.clone()
    opt.step()


def _inv_root(a: np.ndarray, eps: float, p: int) -> np.ndarray:
    """(A + eps I)^(-1/p) by scipy (Schur-based, independent of eigh)."""
    return np.real(fractional_matrix_power(a + eps * np.eye(a.shape[0]), -1.0 / p))


@pytest.mark.parametrize("override,root", [(0, 4), (2, 2)])
def test_2d_frequency_one_no_grafting_is_dense_kronecker(override, root):
    """b1 = 0, no grafting, f = 1: every step is W -= lr (L_hat + eps)^(-1/p) G (R_hat +
    eps)^(-1/p) with L, R the EMAs of G G^T and G^T G, bias-corrected; p = 4 (2-D default) or
    the override."""
    b2, eps, lr = 0.9, 1e-3, 0.1
    p = _param((5, 3))
    opt = Shampoo([p], lr=lr, betas=(0.0, b2), epsilon=eps, grafting="none",
                  precondition_frequency=1, inv_root_override=override,
                  max_preconditioner_dim=5)  # 5 x 3 = 15 <= 1024 would merge to a vector
    rng = np.random.default_rng(1)
    w = p.detach().numpy().copy()
    left, right = np.zeros((5, 5)), np.zeros((3, 3))
    for t in range(1, 5):
        g = rng.standard_normal((5, 3))
        left = b2 * left + (1 - b2) * g @ g.T
        right = b2 * right + (1 - b2) * g.T @ g
        c = 1 - b2 ** t
        w = w - lr * _inv_root(left / c, eps, root) @ g @ _inv_root(right / c, eps, root)
        _step(opt, p, torch.from_numpy(g))
        np.testing.assert_allclose(p.detach().numpy(), w, rtol=1e-9, atol=1e-11)


def test_one_step_closed_form_svd():
    """G = U diag(s) V^T: one step (lr 1) moves W by U diag(s / sqrt(s^2 + eps)) V^T, the
    closed form for epsilon ADDED to eigenvalues. The relative-epsilon convention (eps *
    lam_max, optax / scalable Shampoo) gives a measurably different step."""
    eps = 0.05
    p = _param((6, 4))
    w0 = p.detach().clone().numpy()
    g = np.random.default_rng(2).standard_normal((6, 4))
    opt = Shampoo([p], lr=1.0, betas=(0.9, 0.99), epsilon=eps, grafting="none",
                  precondition_frequency=1, max_preconditioner_dim=6)
    _step(opt, p, torch.from_numpy(g))
    u, s, vt = np.linalg.svd(g, full_matrices=False)
    expected = u @ np.diag(s / np.sqrt(s ** 2 + eps)) @ vt
    step = w0 - p.detach().numpy()
    np.testing.assert_allclose(step, expected, rtol=1e-8, atol=1e-10)
    relative = u @ np.diag(s / np.sqrt(s ** 2 + eps * s.max() ** 2)) @ vt
    assert np.abs(step - relative).max() > 1e-3


def test_vector_parameter_is_full_matrix_adagrad():
    """A 1-D parameter preconditioned with a full-matrix factor, b2 = 1 (sum), b1 = 0, no
    grafting: w -= lr (sum_s g_s g_s^T + eps I)^(-1/2) g_t, full-matrix AdaGrad."""
    eps, lr = 1e-2, 0.5
    p = _param((7,))
    opt = Shampoo([p], lr=lr, betas=(0.0, 1.0), epsilon=eps, grafting="none",
                  precondition_frequency=1, precondition_1d=True)
    rng = np.random.default_rng(3)
    w, h = p.detach().numpy().copy(), np.zeros((7, 7))
    for _ in range(5):
        g = rng.standard_normal(7)
        h += np.outer(g, g)
        w = w - lr * _inv_root(h, eps, 2) @ g
        _step(opt, p, torch.from_numpy(g))
    np.testing.assert_allclose(p.detach().numpy(), w, rtol=1e-9, atol=1e-11)


def test_3d_block_uses_one_root_per_mode():
    """A (3, 4, 5) block (no merging at max_dim 5): each factor gets the exponent -1/6 and
    the direction is G x_1 P_1 x_2 P_2 x_3 P_3 (einsum reference)."""
    eps = 1e-2
    p = _param((3, 4, 5))
    g = np.random.default_rng(4).standard_normal((3, 4, 5))
    opt = Shampoo([p], lr=1.0, betas=(0.0, 1.0), epsilon=eps, grafting="none",
                  precondition_frequency=1, max_preconditioner_dim=5)
    w0 = p.detach().numpy().copy()
    _step(opt, p, torch.from_numpy(g))
    f1 = np.einsum("aij,bij->ab", g, g)
    f2 = np.einsum("iaj,ibj->ab", g, g)
    f3 = np.einsum("ija,ijb->ab", g, g)
    p1, p2, p3 = (_inv_root(f, eps, 6) for f in (f1, f2, f3))
    expected = np.einsum("ijk,ia,jb,kc->abc", g, p1, p2, p3)
    np.testing.assert_allclose(w0 - p.detach().numpy(), expected, rtol=1e-8, atol=1e-10)


def _random_orthogonal(n, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return torch.from_numpy(q)


def test_rotation_equivariance_and_adams_failure():
    """Shampoo without grafting is equivariant: on W' = U W V^T with gradients U G V^T it
    follows U W_t V^T exactly. Adam is not (negative check)."""
    u, v = _random_orthogonal(5, 5), _random_orthogonal(4, 6)
    grads = [torch.from_numpy(np.random.default_rng(10 + t).standard_normal((5, 4)))
             for t in range(6)]

    def run(make_opt, rotate):
        p = _param((5, 4))
        if rotate:
            with torch.no_grad():
                p.copy_(u @ p @ v.T)
        opt = make_opt(p)
        for g in grads:
            _step(opt, p, u @ g @ v.T if rotate else g)
        return p.detach()

    def shampoo(p):
        return Shampoo([p], lr=0.1, betas=(0.9, 0.95), epsilon=1e-4, grafting="none",
                       precondition_frequency=2, momentum=0.5, weight_decay=0.1,
                       max_preconditioner_dim=5)

    def adam(p):
        return torch.optim.Adam([p], lr=0.1)

    plain, rotated = run(shampoo, False), run(shampoo, True)
    torch.testing.assert_close(rotated, u @ plain @ v.T, rtol=1e-9, atol=1e-11)
    plain, rotated = run(adam, False), run(adam, True)
    assert (rotated - u @ plain @ v.T).abs().max() > 1e-2


def test_inverse_root_epsilon_is_added_to_eigenvalues():
    """roots.matrix_inverse_root: (A + eps I)^(-1/p); a slightly negative spectrum is shifted
    to 0 first; a zero matrix with eps = 0 gives the zero pseudo-inverse, not inf/NaN."""
    a = torch.from_numpy(np.diag([4.0, 1.0, 0.0]))
    got = matrix_inverse_root(a, 2, 0.25)
    torch.testing.assert_close(got, torch.diag(torch.tensor([4.25, 1.25, 0.25],
                                                            dtype=DT) ** -0.5))
    shifted = matrix_inverse_root(torch.from_numpy(np.diag([4.0, 1.0, -1e-3])), 1, 0.0)
    # shift by +1e-3: eigenvalues 4.001, 1.001, 0 -> inverses, and 0 for the null direction
    torch.testing.assert_close(shifted, torch.diag(torch.tensor([1 / 4.001, 1 / 1.001, 0.0],
                                                                dtype=DT)))
    assert torch.equal(matrix_inverse_root(torch.zeros(3, 3, dtype=DT), 4, 0.0),
                       torch.zeros(3, 3, dtype=DT))
