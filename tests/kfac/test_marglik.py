"""The Laplace log marginal likelihood of ``submissions.optimizers.kfac.marglik`` against two
references.

1. A dense computation where K-FAC is exact (deep linear networks, unit-variance Gaussian
   likelihood, tests/kfac/test_factors_exact.py's networks and exact GGN blocks): the exact
   GGN block of every layer from torch.func.jacrev, its log-determinant from
   torch.linalg.slogdet, the gradient in the log prior precisions from autograd. K-FAC-expand
   is exact when the loss keeps the R positions, K-FAC-reduce when R is pooled before the
   loss; the other flavour is then *not* equal. Both sides drop the GGN's cross-layer blocks
   (the Laplace approximation here is block diagonal over layers).
2. laplace-torch's ``KronLaplace.log_marginal_likelihood`` on a plain tanh MLP with
   cross-entropy (R = 1, where the flavours coincide). Its conventions, matched explicitly:
   the bias is its own block (``[G]``, no Kronecker partner) beside the weight's ``[G, A]``,
   so ours gets the same blocks (not the optimizer's folded [W, b]); a per-layer prior
   precision is one value per parameter *tensor* (W1, b1, W2, b2); its Kronecker factors are
   those of the *summed* loss (its A = ours, its G = N ours: our scale N); temperature 1
   and prior mean 0 (its defaults, passed explicitly); its data term is minus the summed
   cross-entropy.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from submissions.optimizers.kfac import expand_factors, marglik
from tests.kfac.test_factors_exact import deep_linear, exact_ggn_and_factors, make_weights

DT = torch.float64
EXACT = 1e-10


def rel(a, b):
    return (abs(a - b) / abs(b)).max().item()


def dense_log_ml(log_lik, params, ggn_blocks, n, log_delta):
    """Formula (1) with exact GGN blocks [P_b, P_b] of the mean loss and slogdet."""
    delta = log_delta.exp()
    total = log_lik
    for p, ggn, d in zip(params, ggn_blocks, delta):
        sign, logdet = torch.linalg.slogdet(n * ggn + d * torch.eye(ggn.shape[0], dtype=DT))
        assert sign > 0
        total = total - 0.5 * d * p.pow(2).sum() + 0.5 * p.numel() * torch.log(d) - 0.5 * logdet
    return total


def dense_value_and_grad(log_lik, params, ggn_blocks, n, log_delta):
    eta = log_delta.clone().requires_grad_(True)
    value = dense_log_ml(log_lik, params, ggn_blocks, n, eta)
    (grad,) = torch.autograd.grad(value, eta)
    return value.detach(), grad


def ours_value_and_grad(log_lik, params, factors, n, log_delta):
    """(value, closed-form gradient, autograd gradient of the value) from (A, G) per layer."""
    eigvals = [marglik.block_eigenvalues((G, A)) for A, G in factors]
    sq_norms = torch.stack([p.pow(2).sum() for p in params])
    eta = log_delta.clone().requires_grad_(True)
    value = marglik.log_marginal_likelihood(log_lik, sq_norms, eigvals, n, eta.exp())
    (autograd,) = torch.autograd.grad(value, eta)
    closed = marglik.log_marginal_likelihood_grad(sq_norms, eigvals, n, log_delta.exp())
    return value.detach(), closed, autograd


def linear_setting(pool_after):
    """A deep linear network 3-4-3-2 on N = 5 examples of R = 6 positions, its Gaussian data
    term, exact GGN blocks and both flavours' factors."""
    weights = make_weights([3, 4, 3, 2], seed=21)
    gen = torch.Generator().manual_seed(22)
    xs = torch.randn(5, 6, 3, dtype=DT, generator=gen)
    eps = [torch.zeros(1, w.shape[0], dtype=DT) for w in weights]  # broadcast over R
    outputs = torch.stack([deep_linear(weights, x, eps, pool_after)[0] for x in xs])
    y = torch.randn(outputs.shape, dtype=DT, generator=gen)
    log_lik = -0.5 * (outputs - y).pow(2).sum() - 0.5 * y.numel() * math.log(2 * math.pi)
    blocks = exact_ggn_and_factors(weights, xs, pool_after)
    return weights, log_lik, blocks, xs.shape[0]


SETTINGS = {"loss keeps R": (None, "expand", "reduce"), "R pooled": (1, "reduce", "expand")}
LOG_DELTA = torch.log(torch.tensor([0.3, 2.0, 7.0], dtype=DT))


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_log_ml_and_its_gradient_equal_the_dense_computation_where_kfac_is_exact(setting):
    pool_after, exact_flavour, other = SETTINGS[setting]
    weights, log_lik, blocks, n = linear_setting(pool_after)
    ggns = [b[0] for b in blocks]
    dense, dense_grad = dense_value_and_grad(log_lik, weights, ggns, n, LOG_DELTA)
    index = {"expand": 1, "reduce": 2}
    value, closed, autograd = ours_value_and_grad(
        log_lik, weights, [b[index[exact_flavour]] for b in blocks], n, LOG_DELTA)
    print(f"{setting}: dense {dense.item():.6f}, {exact_flavour} {value.item():.6f}")
    assert rel(value, dense) < EXACT
    assert rel(closed, dense_grad) < EXACT
    assert rel(autograd, dense_grad) < EXACT
    # The wrong flavour is not exact: a different value and gradient.
    wrong, wrong_grad, _ = ours_value_and_grad(
        log_lik, weights, [b[index[other]] for b in blocks], n, LOG_DELTA)
    print(f"{setting}: {other} (not exact) {wrong.item():.6f}")
    assert abs(wrong - dense).item() > 1e-3 * abs(dense).item()
    assert rel(wrong_grad, dense_grad) > 1e-2


def test_a_wrong_prior_precision_gives_a_different_value_and_the_optimum_is_mackays():
    """The closed-form gradient vanishes at delta_b = gamma_b / ||theta_b||^2 (iterated to a
    fixed point), the value there is a maximum along every block's direction, and Adam on
    log delta climbs to it."""
    weights, log_lik, blocks, n = linear_setting(None)
    eigvals = [marglik.block_eigenvalues((G, A)) for _, (A, G), _ in blocks]
    sq_norms = torch.stack([w.pow(2).sum() for w in weights])
    delta = torch.ones(3, dtype=DT)
    for _ in range(200):
        delta = marglik.effective_num_params(eigvals, n, delta) / sq_norms
    grad = marglik.log_marginal_likelihood_grad(sq_norms, eigvals, n, delta)
    assert grad.abs().max() < 1e-9
    best = marglik.log_marginal_likelihood(log_lik, sq_norms, eigvals, n, delta)
    for b in range(3):
        for factor in (0.8, 1.25):
            moved = delta.clone()
            moved[b] *= factor
            assert marglik.log_marginal_likelihood(log_lik, sq_norms, eigvals, n, moved) < best
    start = torch.zeros(3, dtype=DT)
    eta = marglik.maximise_log_prior_precision(start, sq_norms, eigvals, n, steps=500, lr=0.05)
    assert torch.equal(start, torch.zeros(3, dtype=DT))  # the input is not modified
    torch.testing.assert_close(eta.exp(), delta, rtol=1e-4, atol=0)
    before = marglik.log_marginal_likelihood(log_lik, sq_norms, eigvals, n, start.exp())
    assert before < best


def test_kron_logdet_is_the_dense_log_determinant_also_for_singular_factors():
    gen = torch.Generator().manual_seed(23)
    x, y = torch.randn(3, 5, dtype=DT, generator=gen), torch.randn(6, 4, dtype=DT, generator=gen)
    A, G = x.T @ x, y.T @ y  # rank 3 of 5 (singular) and full rank 4
    for block in ((G, A), (A,)):
        dense = block[0] if len(block) == 1 else torch.kron(*block)
        want = torch.linalg.slogdet(7.0 * dense + 0.5 * torch.eye(dense.shape[0], dtype=DT))[1]
        got = marglik.kron_logdet(marglik.block_eigenvalues(block), 7.0, torch.tensor(0.5))
        assert rel(got, want) < EXACT
    # A diagonal (1-D) factor is its own eigenvalues.
    d = torch.rand(4, dtype=DT, generator=gen)
    torch.testing.assert_close(marglik.block_eigenvalues((d,))[0], d)


def test_bad_inputs_are_clear_errors():
    s = (torch.ones(2, dtype=DT), torch.ones(3, dtype=DT))
    ok = dict(log_likelihood=torch.tensor(0.0), sq_norms=torch.ones(1),
              block_eigvals=[s], scale=10.0, prior_precision=torch.ones(1))
    marglik.log_marginal_likelihood(**ok)
    with pytest.raises(ValueError, match=r"one per block"):
        marglik.log_marginal_likelihood(**dict(ok, prior_precision=torch.ones(2)))
    with pytest.raises(ValueError, match=r"must be > 0"):
        marglik.log_marginal_likelihood(**dict(ok, prior_precision=torch.zeros(1)))
    with pytest.raises(ValueError, match=r"sq_norms must be \[B\]"):
        marglik.log_marginal_likelihood(**dict(ok, sq_norms=torch.ones(3)))
    with pytest.raises(ValueError, match=r"scale .* must be > 0"):
        marglik.log_marginal_likelihood(**dict(ok, scale=0.0))
    with pytest.raises(ValueError, match=r"no blocks"):
        marglik.log_marginal_likelihood_grad(torch.ones(0), [], 1.0, torch.ones(0))
    with pytest.raises(ValueError, match=r"must be square"):
        marglik.block_eigenvalues((torch.ones(2, 3),))
    with pytest.raises(ValueError, match=r"one or two Kronecker factors"):
        marglik.block_eigenvalues((torch.eye(2),) * 3)
    with pytest.raises(ValueError, match=r"steps must be >= 0"):
        marglik.maximise_log_prior_precision(torch.zeros(1), torch.ones(1), [s], 1.0, -1)


# ------------------------------------------------------------------ laplace-torch oracle

def mlp_and_data(seed=24, n=12, d_in=4, hidden=5, classes=3):
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(d_in, hidden), torch.nn.Tanh(),
                                torch.nn.Linear(hidden, classes)).to(DT)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, dtype=DT, generator=gen))
    x = torch.randn(n, d_in, dtype=DT, generator=gen)
    y = torch.randint(classes, (n,), generator=gen)
    return model, x, y


def our_mlp_blocks(model, x):
    """Exact-GGN K-FAC blocks of the MLP in laplace-torch's layout: per Linear the weight
    block (G, A) and the bias block (G,). The backward passes are the columns of the square
    root of the cross-entropy Hessian diag(p) - p p^T: v_c = sqrt(p_c) (e_c - p)."""
    lin1, lin2 = model[0], model[2]
    with torch.no_grad():
        s1 = lin1(x)
        h = torch.tanh(s1)
        p = torch.softmax(lin2(h), dim=-1)                              # [N, K]
        eye = torch.eye(p.shape[1], dtype=DT)
        v = p.sqrt().T[:, :, None] * (eye[:, None, :] - p[None])       # [C=K, N, K]
        g2 = v
        g1 = (v @ lin2.weight) * (1 - h.pow(2))                        # [C, N, hidden]
    blocks = []
    for a, g in ((x, g1), (h, g2)):
        A, G = expand_factors(a[:, None], g[:, :, None])  # R = 1: expand == reduce
        blocks += [(G, A), (G,)]
    return blocks


def test_log_ml_and_its_gradient_equal_laplace_torch_kron_laplace():
    laplace = pytest.importorskip("laplace")
    model, x, y = mlp_and_data()
    n = x.shape[0]
    log_delta = torch.log(torch.tensor([0.5, 2.0, 1.5, 0.2], dtype=DT))

    la = laplace.KronLaplace(model, "classification", prior_precision=1.0, prior_mean=0.0,
                             temperature=1.0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=n)
    la.fit(loader)
    eta = log_delta.clone().requires_grad_(True)
    theirs = la.log_marginal_likelihood(prior_precision=eta.exp())
    (their_grad,) = torch.autograd.grad(theirs, eta)

    blocks = [marglik.block_eigenvalues(b) for b in our_mlp_blocks(model, x)]
    params = list(model.parameters())  # W1, b1, W2, b2: the blocks' order
    sq_norms = torch.stack([p.detach().pow(2).sum() for p in params])
    with torch.no_grad():
        log_lik = -F.cross_entropy(model(x), y, reduction="sum")
    ours = marglik.log_marginal_likelihood(log_lik, sq_norms, blocks, n, log_delta.exp())
    our_grad = marglik.log_marginal_likelihood_grad(sq_norms, blocks, n, log_delta.exp())
    print(f"laplace-torch {theirs.item():.8f}, ours {ours.item():.8f}")
    assert rel(ours, theirs.detach()) < EXACT
    assert rel(our_grad, their_grad) < EXACT
    # Their scalar prior is our per-block prior with every block equal.
    scalar = la.log_marginal_likelihood(prior_precision=torch.tensor(0.7, dtype=DT)).detach()
    same = marglik.log_marginal_likelihood(log_lik, sq_norms, blocks, n,
                                           torch.full((4,), 0.7, dtype=DT))
    assert rel(same, scalar) < EXACT
    # A wrong N scale (the factors of the mean loss taken as those of the sum) is caught.
    wrong = marglik.log_marginal_likelihood(log_lik, sq_norms, blocks, 1.0, log_delta.exp())
    assert rel(wrong, theirs.detach()) > 1e-3
