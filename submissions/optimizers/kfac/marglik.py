"""The Laplace log marginal likelihood with a K-FAC GGN, and its gradient in the log prior
precisions (Immer et al., ICML 2021, "Scalable marginal likelihood estimation for model
selection in deep learning"; MacKay 1992). Pure functions: factors (or their eigenvalues) in,
tensors out.

Model. N training examples, per-example losses l_n(theta) = -log p(y_n | x_n, theta), the
training loss their *mean* L = 1/N sum_n l_n. The parameters split into B blocks theta_b
(P_b entries, P = sum_b P_b), each with an isotropic Gaussian prior N(0, delta_b^{-1} I),
delta_b > 0 the prior precision. The Laplace approximation at theta* (a mode) gives

    log p(D | delta) ~= log p(D | theta*) + log p(theta* | delta) + P/2 log(2 pi)
                        - 1/2 log det(H + diag(delta))

    with log p(D | theta*)     = -N L(theta*)
         log p(theta* | delta) = -P/2 log(2 pi) + 1/2 sum_b P_b log delta_b
                                 - 1/2 sum_b delta_b ||theta*_b||^2,

so the 2 pi terms cancel and

    log ML(delta) = -N L(theta*) - 1/2 sum_b delta_b ||theta*_b||^2 + 1/2 sum_b P_b log delta_b
                    - 1/2 sum_b log det(H_b + delta_b I)                                   (1)

H is the GGN of the *summed* loss N L, block diagonal over the blocks. With K-FAC
(``factors.py``: the factors approximate the GGN of the *mean* loss) a block is
``H_b ~= N (F_1 (x) F_2)`` (a layer: F_1 = G [D_out, D_out], F_2 = A [D_in(+1), D_in(+1)],
torch's row-major ``kron(G, A)``), or ``N F_1`` for a block with one dense factor (a bias kept
apart from its weight, as laplace-torch does). ``scale`` is that N (pass N / T for a
temperature T that tempers the likelihood, with -N L / T as the data term).

Log-determinant from the eigendecompositions F_k = Q_k diag(s_k) Q_k^T: the eigenvalues of
F_1 (x) F_2 are all products s_1[i] s_2[j] (the eigenvectors Q_1 (x) Q_2), so

    log det(N F_1 (x) F_2 + delta I) = sum_{i,j} log(N s_1[i] s_2[j] + delta)              (2)

at O(D_1^3 + D_2^3) for the decompositions (done once) and O(D_1 D_2) per evaluation,
instead of O((D_1 D_2)^3) for the dense matrix.

Gradient in eta_b = log delta_b (the parametrisation the optimiser steps in: delta stays
positive, and the scale of delta spans decades):

    d log ML / d eta_b = 1/2 [gamma_b - delta_b ||theta*_b||^2],
    gamma_b = sum_k N lambda_k / (N lambda_k + delta_b)                                   (3)

with lambda_k the P_b eigenvalues of the block's Kronecker product; gamma_b is the block's
effective number of parameters (P_b minus the prior's share sum_k delta_b / (N lambda_k +
delta_b)). The gradient vanishes at MacKay's fixed point delta_b = gamma_b / ||theta*_b||^2.
Every term of (1) but the data term depends on delta, so the data term is only needed for the
value, never for the gradient.

Shapes: B blocks; ``block_eigenvalues`` a sequence of B tuples of 1-D tensors (one or two per
block, [D_1] and [D_2]); ``sq_norms``, ``prior_precision``, ``log_prior_precision`` [B].
"""
import functools
from typing import Optional, Sequence, Tuple

import torch

Tensor = torch.Tensor


# ------------------------------------------------------------------------------ eigenvalues

def factor_eigenvalues(factor: Tensor) -> Tensor:
    """Eigenvalues [D] of a symmetric PSD factor [D, D], clamped at 0 (a PSD factor's
    negative eigenvalues are round-off, and log(N s + delta) needs N s >= 0).

    float32 factors are decomposed in float32 and again in float64 if that fails; only the
    eigenvalues are computed (``eigvalsh``: no eigenvectors, cheaper than ``eigh``).
    """
    if factor.dim() != 2 or factor.shape[0] != factor.shape[1]:
        raise ValueError(f"a Kronecker factor must be square [D, D], got {tuple(factor.shape)}")
    sym = 0.5 * (factor + factor.T)
    dtypes = (torch.float64,) if factor.dtype == torch.float64 else (torch.float32,
                                                                     torch.float64)
    for dtype in dtypes:
        try:
            s = torch.linalg.eigvalsh(sym.to(dtype))
        except RuntimeError:  # torch raises when the algorithm does not converge
            continue
        if torch.isfinite(s).all():
            return s.clamp(min=0).to(factor.dtype)
    raise FloatingPointError(f"eigendecomposition of a {tuple(factor.shape)} factor failed")


def block_eigenvalues(factors: Sequence[Tensor]) -> Tuple[Tensor, ...]:
    """(F_1[, F_2]) -> (s_1[, s_2]): each factor's eigenvalues (a 1-D factor is a diagonal)."""
    if not 1 <= len(factors) <= 2:
        raise ValueError(f"a block has one or two Kronecker factors, got {len(factors)}")
    return tuple(f.clamp(min=0) if f.dim() == 1 else factor_eigenvalues(f) for f in factors)


def kron_eigenvalues(eigenvalues: Sequence[Tensor]) -> Tensor:
    """(s_1 [D_1], s_2 [D_2]) -> the D_1 D_2 eigenvalues s_1[i] s_2[j] of F_1 (x) F_2, flat
    [D_1 D_2] (a single factor: s_1 itself)."""
    for s in eigenvalues:
        if s.dim() != 1:
            raise ValueError(f"eigenvalues must be 1-D, got shape {tuple(s.shape)}")
    return functools.reduce(lambda x, y: torch.outer(x, y).reshape(-1), eigenvalues)


# -------------------------------------------------------------------------- the objective

def _check(block_eigvals: Sequence[Sequence[Tensor]], sq_norms: Tensor, precision: Tensor,
           scale: float) -> None:
    if len(block_eigvals) == 0:
        raise ValueError("no blocks: the marginal likelihood needs at least one")
    if sq_norms.shape != (len(block_eigvals),):
        raise ValueError(f"sq_norms must be [B] = [{len(block_eigvals)}], "
                         f"got {tuple(sq_norms.shape)}")
    if precision.shape != (len(block_eigvals),):
        raise ValueError(f"the prior precisions must be [B] = [{len(block_eigvals)}] (one per "
                         f"block), got {tuple(precision.shape)}")
    if not bool((precision > 0).all()):
        raise ValueError(f"prior precisions must be > 0, got {precision.tolist()}")
    if not scale > 0:
        raise ValueError(f"scale (N, the number of training examples) must be > 0, got {scale}")


def kron_logdet(eigenvalues: Sequence[Tensor], scale: float, prior_precision: Tensor) -> Tensor:
    """log det(scale * F_1 (x) F_2 + delta I) = sum_{i,j} log(scale s_1[i] s_2[j] + delta),
    formula (2); ``prior_precision`` delta a scalar tensor (differentiable)."""
    return torch.log(scale * kron_eigenvalues(eigenvalues) + prior_precision).sum()


def log_marginal_likelihood(log_likelihood: Tensor, sq_norms: Tensor,
                            block_eigvals: Sequence[Sequence[Tensor]], scale: float,
                            prior_precision: Tensor) -> Tensor:
    """Formula (1): the Laplace log marginal likelihood with a block-diagonal K-FAC GGN.

    log_likelihood: log p(D | theta*) = -N L(theta*) (a scalar; it only shifts the value);
    sq_norms [B]: ||theta*_b||^2; block_eigvals: B tuples of factor eigenvalues
    (``block_eigenvalues``); scale: N (the GGN of the summed loss is N times the factors');
    prior_precision [B]: delta_b > 0. Returns a scalar, differentiable in prior_precision.
    """
    _check(block_eigvals, sq_norms, prior_precision, scale)
    total = log_likelihood - 0.5 * (prior_precision * sq_norms).sum()
    for eigvals, delta in zip(block_eigvals, prior_precision):
        num_params = kron_eigenvalues(eigvals).numel()
        total = total + 0.5 * num_params * torch.log(delta) - 0.5 * kron_logdet(
            eigvals, scale, delta)
    return total


def effective_num_params(block_eigvals: Sequence[Sequence[Tensor]], scale: float,
                         prior_precision: Tensor) -> Tensor:
    """gamma_b = sum_k N lambda_k / (N lambda_k + delta_b) [B], formula (3)."""
    gammas = []
    for eigvals, delta in zip(block_eigvals, prior_precision):
        curvature = scale * kron_eigenvalues(eigvals)
        gammas.append((curvature / (curvature + delta)).sum())
    return torch.stack(gammas)


def log_marginal_likelihood_grad(sq_norms: Tensor, block_eigvals: Sequence[Sequence[Tensor]],
                                 scale: float, prior_precision: Tensor) -> Tensor:
    """d log ML / d log delta_b [B] in closed form, formula (3):
    1/2 (gamma_b - delta_b ||theta*_b||^2)."""
    _check(block_eigvals, sq_norms, prior_precision, scale)
    gamma = effective_num_params(block_eigvals, scale, prior_precision)
    return 0.5 * (gamma - prior_precision * sq_norms)


# ------------------------------------------------------------------------------ optimising

def maximise_log_prior_precision(log_prior_precision: Tensor, sq_norms: Tensor,
                                 block_eigvals: Sequence[Sequence[Tensor]], scale: float,
                                 steps: int, lr: float = 0.1,
                                 betas: Tuple[float, float] = (0.9, 0.999),
                                 eps: float = 1e-8,
                                 bounds: Optional[Tuple[float, float]] = None) -> Tensor:
    """``steps`` Adam steps of gradient *ascent* on log ML in eta = log delta [B] (fresh
    moments each call, as in Immer et al.'s inner loop), closed-form gradients (3).

    ``bounds`` (eta_min, eta_max): projected ascent, eta clamped after every step. The
    optimum delta_b = gamma_b / ||theta_b||^2 is unbounded as ||theta_b|| -> 0 (a layer still
    near its zero initialisation is no mode of the posterior), and a caller that turns delta
    into a weight decay needs it finite.
    The Kronecker eigenvalue products are formed once, so a step costs O(P) elementwise work.
    Returns the new eta [B] (``log_prior_precision`` is not modified).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if bounds is not None and not bounds[0] <= bounds[1]:
        raise ValueError(f"bounds must be (low, high) with low <= high, got {bounds}")
    eta = log_prior_precision.detach().clone()
    _check(block_eigvals, sq_norms, eta.exp(), scale)
    curvatures = [scale * kron_eigenvalues(e) for e in block_eigvals]
    m, v = torch.zeros_like(eta), torch.zeros_like(eta)
    for t in range(1, steps + 1):
        delta = eta.exp()
        gamma = torch.stack([(c / (c + d)).sum() for c, d in zip(curvatures, delta)])
        grad = 0.5 * (gamma - delta * sq_norms)
        m = betas[0] * m + (1 - betas[0]) * grad
        v = betas[1] * v + (1 - betas[1]) * grad * grad
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        eta = eta + lr * m_hat / (v_hat.sqrt() + eps)
        if bounds is not None:
            eta = eta.clamp(*bounds)
    return eta
