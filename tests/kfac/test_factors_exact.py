"""K-FAC-expand / K-FAC-reduce factors against the exact GGN, built densely with autograd.

Every network here is *linear* in its input (deep linear networks, convolutions, mean
pooling) and the loss is l_n = 1/2 ||f_n - y_n||^2 (a unit-variance Gaussian likelihood,
loss Hessian = identity), L = 1/N sum_n l_n. Then

    exact GGN(L) block of layer l  =  1/N sum_n J_n^T J_n,   J_n = d f_n / d vec(W~_l)

with W~ = [W, b] flattened row-major, which pairs with ``kron(G, A)``. The output
gradients g of the factor functions are the rows of d f_n / d s_l (s_l = the layer's output),
i.e. the backward passes of the columns of the identity Hessian factor: g [C=dim f, N, R, D].

Relative gaps ||kron(G, A) - GGN||_F / ||GGN||_F are printed (pytest -s shows them).
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import jacrev

from submissions.optimizers.kfac import (append_ones, conv2d_inputs, conv2d_output_grads,
                                         expand_factors, expand_factors_segments,
                                         linear_inputs, reduce_factors,
                                         reduce_factors_segments)

DT = torch.float64
EXACT = 1e-10   # exact up to float64 round-off
GAP = 0.05      # "not exact": a relative error at least this large


def rel_gap(approx, exact):
    return ((approx - exact).norm() / exact.norm()).item()


def kfac_block(A, G):
    """A (x) G for torch's row-major W~.flatten(): kron(G, A)."""
    return torch.kron(G, A)


# ------------------------------------------------------------------- deep linear networks

def make_weights(dims, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(dout, din + 1, generator=gen, dtype=DT) / math.sqrt(din)
            for din, dout in zip(dims[:-1], dims[1:])]


def deep_linear(weights, x, eps, pool_after=None):
    """One example x [R, D0] -> output f; layer l computes s_l = a~_l W~_l^T + eps_l.

    ``pool_after=k``: mean over R after layer k (layers > k see R = 1). Returns (f, inputs)
    where inputs[l] = a~_l [R_l, D_l + 1].
    """
    h, inputs = x, []
    for i, (w, e) in enumerate(zip(weights, eps)):
        a = append_ones(h)
        inputs.append(a)
        h = a @ w.T + e
        if pool_after == i:
            h = h.mean(dim=0, keepdim=True)
    return h, inputs


def exact_and_kfac(weights, xs, pool_after=None):
    """Per layer: (exact GGN block, expand block, reduce block) for the batch xs [N, R, D0]."""
    return [(ggn, kfac_block(*expand), kfac_block(*reduce))
            for ggn, expand, reduce in exact_ggn_and_factors(weights, xs, pool_after)]


def exact_ggn_and_factors(weights, xs, pool_after=None):
    """Per layer: (exact GGN block [P, P] of the mean loss, expand (A, G), reduce (A, G)) for
    the batch xs [N, R, D0] (tests/kfac/test_marglik.py builds on the factors)."""
    N = xs.shape[0]
    eps0 = []
    for i, w in enumerate(weights):
        r = xs.shape[1] if pool_after is None or i <= pool_after else 1
        eps0.append(torch.zeros(r, w.shape[0], dtype=DT))
    out = []
    for layer in range(len(weights)):
        ggn, a_list, g_list = 0.0, [], []
        for n in range(N):
            def f_of_w(w, n=n, layer=layer):
                ws = list(weights)
                ws[layer] = w
                return deep_linear(ws, xs[n], eps0, pool_after)[0].reshape(-1)

            def f_of_s(e, n=n, layer=layer):
                es = list(eps0)
                es[layer] = e
                return deep_linear(weights, xs[n], es, pool_after)[0].reshape(-1)

            J = jacrev(f_of_w)(weights[layer]).reshape(-1, weights[layer].numel())
            ggn = ggn + J.T @ J / N
            a_list.append(deep_linear(weights, xs[n], eps0, pool_after)[1][layer])
            g_list.append(jacrev(f_of_s)(eps0[layer]))  # [C, R, D_out]
        a = torch.stack(a_list)              # [N, R, D_in + 1]
        g = torch.stack(g_list, dim=1)       # [C, N, R, D_out]
        out.append((ggn, expand_factors(a, g), reduce_factors(a, g)))
    return out


def test_expand_exact_when_loss_keeps_r_and_reduce_is_not():
    """Per-position loss (every token has a target): expand exact, reduce off."""
    weights = make_weights([3, 4, 3, 2])
    xs = torch.randn(5, 6, 3, dtype=DT, generator=torch.Generator().manual_seed(1))
    for layer, (ggn, exp_, red) in enumerate(exact_and_kfac(weights, xs)):
        e_gap, r_gap = rel_gap(exp_, ggn), rel_gap(red, ggn)
        print(f"loss keeps R, layer {layer}: expand gap {e_gap:.2e}, reduce gap {r_gap:.2e}")
        assert e_gap < EXACT
        assert r_gap > GAP


def test_reduce_exact_when_r_is_pooled_and_expand_is_not():
    """Mean over R after layer 1, then one more layer (R = 1 there): reduce exact for the
    pre-pool layers, expand off; after the pool both are plain K-FAC and exact."""
    weights = make_weights([3, 4, 3, 2], seed=2)
    xs = torch.randn(5, 6, 3, dtype=DT, generator=torch.Generator().manual_seed(3))
    for layer, (ggn, exp_, red) in enumerate(exact_and_kfac(weights, xs, pool_after=1)):
        e_gap, r_gap = rel_gap(exp_, ggn), rel_gap(red, ggn)
        print(f"R pooled, layer {layer}: expand gap {e_gap:.2e}, reduce gap {r_gap:.2e}")
        assert r_gap < EXACT
        if layer <= 1:
            assert e_gap > GAP
        else:
            assert e_gap < EXACT


def test_both_flavours_are_plain_kfac_when_r_is_one():
    """R = 1: expand == reduce == the plain K-FAC of a batch, and exact for linear nets."""
    weights = make_weights([3, 4, 2], seed=4)
    xs = torch.randn(7, 1, 3, dtype=DT, generator=torch.Generator().manual_seed(5))
    for ggn, exp_, red in exact_and_kfac(weights, xs):
        assert torch.allclose(exp_, red, atol=1e-12)
        assert rel_gap(exp_, ggn) < EXACT
    a = torch.randn(7, 1, 4, dtype=DT)
    g = torch.randn(7, 1, 2, dtype=DT)
    A, G = expand_factors(a, g)
    assert torch.allclose(A, a[:, 0].T @ a[:, 0] / 7)
    assert torch.allclose(G, g[:, 0].T @ g[:, 0] / 7)


def test_damping_scale_is_batch_size_independent():
    """Duplicating the batch (N -> 2N, same distribution) leaves A and G unchanged: both
    factors are averages, so damping means the same at every batch size."""
    gen = torch.Generator().manual_seed(6)
    a, g = torch.randn(4, 3, 5, dtype=DT, generator=gen), torch.randn(4, 3, 2, dtype=DT,
                                                                      generator=gen)
    for fn in (expand_factors, reduce_factors):
        A1, G1 = fn(a, g)
        A2, G2 = fn(torch.cat([a, a]), torch.cat([g, g]))
        assert torch.allclose(A1, A2) and torch.allclose(G1, G2)


def test_leading_sharing_dims_flatten_into_r():
    x = torch.randn(2, 3, 4, 5)
    assert linear_inputs(x).shape == (2, 12, 5)
    assert torch.equal(linear_inputs(x)[1, 5], x[1, 1, 1])
    assert linear_inputs(torch.randn(2, 5)).shape == (2, 1, 5)


def test_monte_carlo_fisher_approaches_the_ggn():
    """Sampled targets y ~ N(f, I): dl/df = -eps, eps ~ N(0, I); the factors from M sampled
    backward passes (g / sqrt(M)) converge to the exact ones (error ~ 1/sqrt(M))."""
    weights = make_weights([3, 4, 2], seed=7)
    xs = torch.randn(4, 3, 3, dtype=DT, generator=torch.Generator().manual_seed(8))
    N, R = xs.shape[:2]
    eps0 = [torch.zeros(R, w.shape[0], dtype=DT) for w in weights]
    layer = 0
    a = torch.stack([deep_linear(weights, xs[n], eps0)[1][layer] for n in range(N)])
    jac = torch.stack([jacrev(lambda e, n=n: deep_linear(
        weights, xs[n], [e, eps0[1]])[0].reshape(-1))(eps0[layer]) for n in range(N)], 1)
    A, G_exact = expand_factors(a, jac)
    gen = torch.Generator().manual_seed(9)
    errors = []
    for M in (100, 10000):
        z = torch.randn(M, N, jac.shape[0], dtype=DT, generator=gen)  # sampled -dl/df
        g_mc = torch.einsum("mnc,cnrd->mnrd", z, jac) / math.sqrt(M)
        _, G_mc = expand_factors(a, g_mc)
        errors.append(rel_gap(G_mc, G_exact))
    print(f"MC-Fisher G error: M=100 {errors[0]:.3f}, M=10000 {errors[1]:.4f}")
    assert errors[1] < 0.05 and errors[1] < errors[0]


# ------------------------------------------------------------------------------ Conv2d

def im2col_loop(x, kh, kw, stride, padding, dilation):
    """The explicit patch construction, one output pixel at a time: [N, R, C_in*kh*kw]."""
    xp = F.pad(x, (padding, padding, padding, padding))
    N, C, H, W = xp.shape
    h_out = (H - dilation * (kh - 1) - 1) // stride + 1
    w_out = (W - dilation * (kw - 1) - 1) // stride + 1
    rows = []
    for i in range(h_out):
        for j in range(w_out):
            patch = xp[:, :, i * stride:i * stride + dilation * (kh - 1) + 1:dilation,
                       j * stride:j * stride + dilation * (kw - 1) + 1:dilation]
            rows.append(patch.reshape(N, -1))
    return torch.stack(rows, dim=1)


@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2)])
def test_conv2d_patches_are_im2col_and_make_conv_a_linear_layer(stride, padding, dilation):
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(2, 3, 7, 6, dtype=DT, generator=gen)
    w = torch.randn(4, 3, 3, 2, dtype=DT, generator=gen)
    b = torch.randn(4, dtype=DT, generator=gen)
    patches = conv2d_inputs(x, (3, 2), stride=stride, padding=padding, dilation=dilation)
    assert torch.allclose(patches, im2col_loop(x, 3, 2, stride, padding, dilation))
    # [C_out, C_in*kh*kw] view of the kernel: conv = the linear layer at every output pixel.
    y = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)
    w_tilde = torch.cat([w.reshape(4, -1), b[:, None]], dim=1)
    assert torch.allclose(conv2d_output_grads(y), append_ones(patches) @ w_tilde.T)
    # The expand factors are the explicit im2col outer products.
    g = torch.randn(2, 4, *y.shape[2:], dtype=DT, generator=gen)
    A, G = expand_factors(append_ones(patches), conv2d_output_grads(g))
    loop_a = append_ones(im2col_loop(x, 3, 2, stride, padding, dilation)).reshape(-1, 19)
    loop_g = g.permute(0, 2, 3, 1).reshape(-1, 4)
    assert torch.allclose(A, loop_a.T @ loop_a / loop_a.shape[0])
    assert torch.allclose(G, loop_g.T @ loop_g / 2)


def conv_net(wc, wh, x, e, pooled):
    """conv 3x3 (pad 1) -> [pooled: global mean pool -> linear | per pixel: 1x1 linear]."""
    s = F.conv2d(x[None], wc[:, :-1].reshape(wc.shape[0], -1, 3, 3), wc[:, -1], padding=1)
    s = s + e
    h = s.mean(dim=(2, 3)) if pooled else s.flatten(2).transpose(1, 2)  # [1, C] | [1, R, C]
    return (append_ones(h) @ wh.T).reshape(-1)


@pytest.mark.parametrize("pooled", [False, True])
def test_conv2d_exactness_both_ways(pooled):
    """Per-pixel loss: expand exact for the conv layer, reduce not; global mean pool before
    the loss: reduce exact, expand not."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(3, 2, 4, 4, dtype=DT, generator=gen)
    wc = torch.randn(3, 2 * 9 + 1, dtype=DT, generator=gen) / 4
    wh = torch.randn(2, 4, dtype=DT, generator=gen)
    e0 = torch.zeros(1, 3, 4, 4, dtype=DT)
    N = x.shape[0]
    ggn, gs = 0.0, []
    for n in range(N):
        J = jacrev(lambda w: conv_net(w, wh, x[n], e0, pooled))(wc).reshape(-1, wc.numel())
        ggn = ggn + J.T @ J / N
        gs.append(conv2d_output_grads(jacrev(lambda e: conv_net(wc, wh, x[n], e, pooled))(
            e0)[:, 0]))                                        # [C, R, C_out]
    a = append_ones(conv2d_inputs(x, 3, padding=1))
    g = torch.stack(gs, dim=1)
    e_gap = rel_gap(kfac_block(*expand_factors(a, g)), ggn)
    r_gap = rel_gap(kfac_block(*reduce_factors(a, g)), ggn)
    print(f"conv2d pooled={pooled}: expand gap {e_gap:.2e}, reduce gap {r_gap:.2e}")
    exact, off = (r_gap, e_gap) if pooled else (e_gap, r_gap)
    assert exact < EXACT
    assert off > GAP


# ------------------------------------------------------------------------- ragged graphs

def ragged_batch(sizes, dim, pad_nodes=3, seed=12):
    """Flat node layout: real nodes of graphs 0..G-1, then padding nodes (garbage values)
    in an extra padding graph G. Returns x [M, dim], segment ids [M], mask [M]."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.cat([torch.full((k,), i) for i, k in enumerate(sizes)]
                    + [torch.full((pad_nodes,), len(sizes))])
    mask = torch.arange(len(ids)) < sum(sizes)
    x = torch.randn(len(ids), dim, dtype=DT, generator=gen)
    x[~mask] = 1e3  # padding must never leak in
    return x, ids, mask


def node_mlp(weights, x):
    """Two per-node linear layers (the GNN's node MLP, no message passing)."""
    inputs, h = [], x
    for w in weights:
        inputs.append(append_ones(h))
        h = inputs[-1] @ w.T
    return h, inputs


@pytest.mark.parametrize("readout", ["graph_mean", "per_node"])
def test_ragged_graphs_segments_match_per_graph_loop_and_exact_ggn(readout):
    """Per-graph mean readout: reduce over segment ids == the per-graph loop == exact GGN,
    expand not exact. Per-node loss: expand over real nodes exact, reduce not. Padding
    nodes (value 1e3) and the padding graph never contribute."""
    sizes = [2, 5, 3]
    weights = make_weights([3, 4, 2], seed=13)
    x, ids, mask = ragged_batch(sizes, 3)
    N, S = len(sizes), len(sizes) + 1
    graphs = [x[ids == i] for i in range(N)]

    def f_graph(ws, xg, layer=None, e=None):
        inputs, h = [], xg
        for i, w in enumerate(ws):
            inputs.append(append_ones(h))
            h = inputs[-1] @ w.T + (e if i == layer else 0.0)
        return (h.mean(0) if readout == "graph_mean" else h).reshape(-1)

    for layer in range(len(weights)):
        ggn = 0.0
        g_flat = []
        for xg in graphs:
            def f_w(w, xg=xg):
                ws = list(weights)
                ws[layer] = w
                return f_graph(ws, xg)
            J = jacrev(f_w)(weights[layer]).reshape(-1, weights[layer].numel())
            ggn = ggn + J.T @ J / N
            e0 = torch.zeros(len(xg), weights[layer].shape[0], dtype=DT)
            g_flat.append(jacrev(lambda e, xg=xg: f_graph(weights, xg, layer, e))(e0))
        # Flat layout: C differs per graph (per-node outputs), so zero-pad C to the max:
        # a zero backward pass adds nothing to G.
        c_max = max(gg.shape[0] for gg in g_flat)
        g_real = torch.cat([F.pad(gg, (0, 0, 0, 0, 0, c_max - gg.shape[0])) for gg in g_flat],
                           dim=1)                                     # [C, M_real, D_out]
        g = torch.cat([g_real, torch.full((c_max, (~mask).sum(), g_real.shape[-1]), 7.0,
                                          dtype=DT)], dim=1)          # padding: garbage
        a = node_mlp(weights, x)[1][layer]
        if layer > 0:  # padding activations are garbage too (1e3 propagated)
            assert a[~mask].abs().max() > 10
        red = kfac_block(*reduce_factors_segments(a, g, ids, S, mask))
        exp_ = kfac_block(*expand_factors_segments(a, g, ids, S, mask))
        # Per-graph loop reference for reduce.
        a_bar = torch.stack([a[ids == i].mean(0) for i in range(N)])
        g_bar = torch.stack([g[:, ids == i].sum(1) for i in range(N)], 1).reshape(-1, g.shape[-1])
        loop = kfac_block(a_bar.T @ a_bar / N, g_bar.T @ g_bar / N)
        assert torch.allclose(red, loop, rtol=1e-10, atol=1e-12)
        # Dense padded layout with an [N, R_max] mask gives the same factors.
        r_max = max(sizes)
        a_dense = torch.zeros(N, r_max, a.shape[-1], dtype=DT)
        g_dense = torch.zeros(c_max, N, r_max, g.shape[-1], dtype=DT)
        m_dense = torch.zeros(N, r_max, dtype=torch.bool)
        for i, k in enumerate(sizes):
            a_dense[i, :k], g_dense[:, i, :k], m_dense[i, :k] = a[ids == i], g[:, ids == i], True
        a_dense[~m_dense], g_dense[:, ~m_dense] = 5.0, 5.0  # padding garbage, masked out
        assert torch.allclose(kfac_block(*reduce_factors(a_dense, g_dense, m_dense)), red)
        assert torch.allclose(kfac_block(*expand_factors(a_dense, g_dense, m_dense)), exp_)
        e_gap, r_gap = rel_gap(exp_, ggn), rel_gap(red, ggn)
        print(f"ragged {readout}, layer {layer}: expand gap {e_gap:.2e}, "
              f"reduce gap {r_gap:.2e}")
        exact, off = (r_gap, e_gap) if readout == "graph_mean" else (e_gap, r_gap)
        assert exact < EXACT
        assert off > GAP


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 0, 1), ((2, 1), (1, 2), 2)])
def test_mean_patches_equal_the_mean_of_im2col(stride, padding, dilation):
    """K-FAC-reduce's input statistic without the patch matrix: the same numbers."""
    from submissions.optimizers.kfac.factors import conv2d_inputs, conv2d_mean_patches
    x = torch.randn(3, 4, 9, 8, dtype=torch.float64)
    full = conv2d_inputs(x, (3, 2), stride, padding, dilation).mean(dim=1, keepdim=True)
    fast = conv2d_mean_patches(x, (3, 2), stride, padding, dilation)
    assert fast.shape == full.shape
    torch.testing.assert_close(fast, full, rtol=1e-12, atol=1e-12)
