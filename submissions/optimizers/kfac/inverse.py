"""Damped inverses of Kronecker factors and the preconditioned direction.

Two damping modes for (A (x) G + lambda I)^{-1} applied to a gradient matrix Gr [D_out, D_in]
(vec(Gr) column-stacked, so (A (x) G) vec(Gr) = vec(G Gr A)):

- ``pi`` (factor-wise, Martens & Grosse 2015, Sec. 6.3): (A + dA I)^{-1} (x) (G + dG I)^{-1} with
  dA = sqrt(lambda) * pi, dG = sqrt(lambda) / pi, pi = sqrt((tr A / D_in) / (tr G / D_out)),
  which balances the damping between the factors. Direction = (G + dG)^{-1} Gr (A + dA)^{-1}.
- ``exact`` (eigendecomposition): A = Q_A diag(s_A) Q_A^T, G = Q_G diag(s_G) Q_G^T, and
  (A (x) G + lambda I)^{-1} vec(Gr) = vec(Q_G [(Q_G^T Gr Q_A) / (s_G s_A^T + lambda)] Q_A^T),
  the exact inverse of the damped Kronecker product.

Numerics: factors are symmetrised, decomposed in float32 and redone in float64 when float32
fails (Cholesky not positive definite, or non-finite results). A zero factor (a layer fed
zeros, or one whose output gradients are all zero because the head above it is
zero-initialised) has trace 0; pi would be 0 or inf, so pi falls back to 1 and the damping
alone keeps the inverse finite.
"""
import math
from typing import Tuple

import torch

Tensor = torch.Tensor


def symmetrise(x: Tensor) -> Tensor:
    """(X + X^T) / 2: round-off in the outer products leaves tiny asymmetries."""
    return 0.5 * (x + x.T)


def pi_split(A: Tensor, G: Tensor, damping: float) -> Tuple[float, float]:
    """Factor damping (dA, dG) with dA * dG = damping and dA / dG = pi^2 (see module doc)."""
    tr_a = (torch.trace(A) / A.shape[0]).item()
    tr_g = (torch.trace(G) / G.shape[0]).item()
    if tr_a > 0 and tr_g > 0 and math.isfinite(tr_a) and math.isfinite(tr_g):
        pi = math.sqrt(tr_a / tr_g)
    else:  # a zero (or broken) factor: balance cannot be measured
        pi = 1.0
    root = math.sqrt(damping)
    return root * pi, root / pi


def _dtypes(x: Tensor):
    """float32 then float64 for float32/16 factors; float64 factors stay float64."""
    return (torch.float64,) if x.dtype == torch.float64 else (torch.float32, torch.float64)


def damped_inverse(x: Tensor, damping: float) -> Tensor:
    """(sym(X) + damping I)^{-1} by Cholesky: float32 first, float64 if float32 fails.

    X [D, D] PSD, damping > 0. Returns X's dtype.
    """
    eye = torch.eye(x.shape[0], dtype=torch.float64, device=x.device)
    for dtype in _dtypes(x):
        m = symmetrise(x.to(dtype)) + damping * eye.to(dtype)
        chol, info = torch.linalg.cholesky_ex(m)
        if info.item() == 0:
            inv = torch.cholesky_inverse(chol)
            if torch.isfinite(inv).all():
                return symmetrise(inv).to(x.dtype)
    raise FloatingPointError(f"factor not invertible even in float64 (damping {damping})")


def eigh(x: Tensor) -> Tuple[Tensor, Tensor]:
    """Eigenvalues (clamped >= 0: a PSD factor's negatives are round-off) and vectors of
    sym(X), float32 first, float64 if float32 fails. Returns X's dtype."""
    for dtype in _dtypes(x):
        try:
            s, q = torch.linalg.eigh(symmetrise(x.to(dtype)))
        except RuntimeError:  # torch raises on non-convergence
            continue
        if torch.isfinite(s).all() and torch.isfinite(q).all():
            return s.clamp(min=0).to(x.dtype), q.to(x.dtype)
    raise FloatingPointError("eigendecomposition failed even in float64")


def precondition_pi(grad: Tensor, a_inv: Tensor, g_inv: Tensor) -> Tensor:
    """grad [D_out, D_in] -> (G + dG)^{-1} grad (A + dA)^{-1} (the damped inverses given)."""
    return g_inv @ grad @ a_inv


def precondition_exact(grad: Tensor, s_a: Tensor, q_a: Tensor, s_g: Tensor, q_g: Tensor,
                       damping: float) -> Tensor:
    """grad [D_out, D_in] -> (A (x) G + damping I)^{-1} grad, from the eigendecompositions."""
    rotated = q_g.T @ grad @ q_a
    return q_g @ (rotated / (s_g[:, None] * s_a[None, :] + damping)) @ q_a.T
