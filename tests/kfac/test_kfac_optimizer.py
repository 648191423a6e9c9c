"""The KFAC optimizer: its step is the dense damped Kronecker solve, training gradients are
untouched, zero factors are safe, uncovered parameters get NAdamW, checkpoints resume."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from submissions.optimizers.kfac import append_ones, expand_factors, reduce_factors
from submissions.optimizers.kfac.inverse import damped_inverse, pi_split
from submissions.optimizers.kfac.optimizer import KFAC

DT = torch.float64


def mse_step(model, opt, x, y):
    """One step on L = 1/N sum_n 1/2 ||f_n - y_n||^2 with the empirical Fisher."""
    opt.zero_grad()
    out = model(x)
    opt.update_curvature(out, "mse", targets=y)
    (0.5 * (out - y).pow(2).sum() / x.shape[0]).backward()
    opt.step()


@pytest.mark.parametrize("flavour", ["expand", "reduce"])
@pytest.mark.parametrize("damping_mode", ["pi", "exact"])
def test_step_is_the_dense_damped_kronecker_solve(flavour, damping_mode):
    """Linear layer with weight sharing (x [N, R, D_in]), MSE, momentum 0, lr 1: the step is
    -(A (x) G + damping)^{-1} grad, solved densely; A, G are the factor functions' output on
    the layer input and the per-example output gradient f - y."""
    torch.manual_seed(0)
    layer = nn.Linear(4, 3).to(DT)
    x, y = torch.randn(6, 5, 4, dtype=DT), torch.randn(6, 5, 3, dtype=DT)
    damping = 0.1
    opt = KFAC(layer, lr=1.0, flavour=flavour, damping=damping, damping_mode=damping_mode,
               momentum=0.0, fisher="empirical")
    w_old = torch.cat([layer.weight, layer.bias[:, None]], 1).detach().clone()
    with torch.no_grad():
        g_out = layer(x) - y  # d(sum of per-example losses)/ds
    A, G = {"expand": expand_factors, "reduce": reduce_factors}[flavour](append_ones(x), g_out)
    mse_step(layer, opt, x, y)
    state = opt.state[layer.weight]
    assert torch.allclose(state["A"], A) and torch.allclose(state["G"], G)
    grad = torch.cat([layer.weight.grad, layer.bias.grad[:, None]], 1)
    w_new = torch.cat([layer.weight, layer.bias[:, None]], 1).detach()
    vec = grad.flatten()  # row-major: the curvature is kron(G, A)
    if damping_mode == "exact":
        dense = torch.kron(G, A) + damping * torch.eye(vec.numel(), dtype=DT)
    else:
        d_a, d_g = pi_split(A, G, damping)
        dense = torch.kron(G + d_g * torch.eye(3, dtype=DT), A + d_a * torch.eye(5, dtype=DT))
    expected = torch.linalg.solve(dense, vec).reshape(grad.shape)
    assert torch.allclose(w_old - w_new, expected, rtol=1e-8, atol=1e-10)


def test_training_gradients_are_untouched():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 4))
    twin = copy.deepcopy(model)
    opt = KFAC(model, mc_samples=3)
    x, y = torch.randn(7, 5), torch.randint(0, 4, (7,))
    out = model(x)
    assert opt.update_curvature(out, "cross_entropy")
    F.cross_entropy(out, y).backward()
    F.cross_entropy(twin(x), y).backward()
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p.grad, q.grad)


@pytest.mark.parametrize("damping_mode", ["pi", "exact"])
def test_zero_initialised_head_gives_finite_steps(damping_mode):
    """A zero head makes every G below it exactly zero: no crash, no NaN, and training moves."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    nn.init.zeros_(model[2].weight)
    nn.init.zeros_(model[2].bias)
    opt = KFAC(model, lr=0.1, damping=1e-3, damping_mode=damping_mode)
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    for i in range(3):
        opt.zero_grad()
        out = model(x)
        opt.update_curvature(out, "cross_entropy")
        F.cross_entropy(out, y).backward()
        opt.step()
        if i == 0:  # the layer below the zero head has G exactly zero
            assert float(opt.state[model[0].weight]["G"].abs().max()) == 0.0
    for p in model.parameters():
        assert torch.isfinite(p).all()
    assert model[2].weight.abs().sum() > 0


def test_uncovered_parameters_get_nadamw_and_layers_are_classified():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1, groups=2),
                          nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(4 * 25, 3))
    opt = KFAC(model, lr=1e-2, flavour="reduce", layer_flavours={"4": "expand"})
    covered = {id(layer.module) for layer in opt._layers}
    assert covered == {id(model[0]), id(model[4])}
    assert {id(p) for p in opt.first_order_params} == {
        id(model[1].weight), id(model[1].bias), id(model[2].weight), id(model[2].bias)}
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(5, 2, 5, 5), torch.randint(0, 3, (5,))
    out = model(x)
    opt.update_curvature(out, "cross_entropy")
    F.cross_entropy(out, y).backward()
    opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert "exp_avg" in opt.state[model[2].weight] and "A" in opt.state[model[0].weight]
    assert opt.state[model[0].weight]["A"].shape == (2 * 9 + 1, 2 * 9 + 1)
    with pytest.raises(ValueError):
        KFAC(model, layer_flavours={"2": "expand"})  # GroupNorm is not a covered layer


def train(model, opt, steps, seed):
    torch.manual_seed(seed)
    x, y = torch.randn(12, 3, 5), torch.randint(0, 4, (12, 3))
    for _ in range(steps):
        opt.zero_grad()
        out = model(x)
        opt.update_curvature(out, "cross_entropy")  # samples from the global generator
        F.cross_entropy(out.reshape(-1, 4), y.reshape(-1)).backward()
        opt.step()


def make(seed=4):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 6), nn.LayerNorm(6), nn.Linear(6, 4))
    return model, KFAC(model, lr=0.05, weight_decay=0.01, factor_every=2, inverse_every=3,
                       kl_clip=1e-2)


def test_state_dict_round_trip_continues_the_same_trajectory():
    model, opt = make()
    train(model, opt, 4, seed=10)
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    train(model, opt, 5, seed=11)
    model2, opt2 = make(seed=99)  # different init: everything must come from the checkpoint
    model2.load_state_dict(saved_model)
    opt2.load_state_dict(saved_opt)
    assert opt2.kfac_step == 4
    train(model2, opt2, 5, seed=11)
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)


def test_damped_inverse_falls_back_to_float64():
    """Singular float32 factor with a damping float32 cannot resolve (1 + 1e-12 == 1):
    float32 Cholesky fails, the float64 retry gives the right (float32) inverse."""
    m = torch.ones(2, 2)
    damping = 1e-12
    assert torch.linalg.cholesky_ex(m + damping * torch.eye(2))[1].item() != 0
    inv = damped_inverse(m, damping)
    assert inv.dtype == torch.float32 and torch.isfinite(inv).all()
    ref = torch.linalg.inv(m.double() + damping * torch.eye(2, dtype=DT))
    assert torch.allclose(inv.double(), ref, rtol=1e-4)
    zero = damped_inverse(torch.zeros(3, 3), 0.5)
    assert torch.allclose(zero, 2 * torch.eye(3))
    assert pi_split(torch.zeros(3, 3), torch.eye(2), 4.0) == (2.0, 2.0)


def test_conv2d_step_is_the_dense_damped_kronecker_solve():
    """Conv2d (stride 2, padding 1), per-pixel MSE, exact damping: the weight+bias step is
    -(A (x) G + damping)^{-1} grad for the [C_out, C_in*kh*kw + 1] view, A from im2col."""
    torch.manual_seed(5)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1).to(DT)
    x = torch.randn(4, 2, 6, 5, dtype=DT)
    y = torch.randn(4, 3, 3, 3, dtype=DT)
    damping = 0.05
    opt = KFAC(conv, lr=1.0, damping=damping, damping_mode="exact", momentum=0.0,
               fisher="empirical")
    with torch.no_grad():
        conv(x)  # no autograd: nothing recorded
    assert opt._layers[0].a is None
    w_old = torch.cat([conv.weight.reshape(3, -1), conv.bias[:, None]], 1).detach().clone()
    mse_step(conv, opt, x, y)
    state = opt.state[conv.weight]
    A, G = state["A"], state["G"]
    assert A.shape == (19, 19) and G.shape == (3, 3)
    grad = torch.cat([conv.weight.grad.reshape(3, -1), conv.bias.grad[:, None]], 1)
    dense = torch.kron(G, A) + damping * torch.eye(grad.numel(), dtype=DT)
    expected = torch.linalg.solve(dense, grad.flatten()).reshape(grad.shape)
    w_new = torch.cat([conv.weight.reshape(3, -1), conv.bias[:, None]], 1).detach()
    assert torch.allclose(w_old - w_new, expected, rtol=1e-8, atol=1e-10)


def test_sampled_cross_entropy_fisher_approaches_the_ggn():
    """Linear head, cross-entropy: the sampled-label G (many samples) approaches the exact
    GGN factor 1/N sum_n (diag(p_n) - p_n p_n^T) (the Hessian of CE in the logits)."""
    torch.manual_seed(6)
    head = nn.Linear(3, 4).to(DT)
    x = torch.randn(5, 3, dtype=DT)
    opt = KFAC(head, mc_samples=4000)
    out = head(x)
    opt.update_curvature(out, "cross_entropy")
    p = torch.softmax(out.detach(), -1)
    exact = (torch.diag_embed(p) - p[:, :, None] * p[:, None, :]).mean(0)
    err = ((opt.state[head.weight]["G"] - exact).norm() / exact.norm()).item()
    print(f"sampled CE Fisher G error (4000 samples): {err:.4f}")
    assert err < 0.05


def test_newton_like_on_ill_conditioned_least_squares():
    """Linear regression with input scales 1..100 (condition 1e4): the GGN is the Hessian and
    A (x) G with sampled G ~ I is close to it, so three lr=1 steps reach the least-squares
    optimum, where plain gradient steps at any stable lr barely move the small directions."""
    torch.manual_seed(7)
    x = torch.randn(64, 4, dtype=DT) * torch.tensor([1.0, 10.0, 30.0, 100.0], dtype=DT)
    y = x @ torch.randn(4, 2, dtype=DT) + 0.1 * torch.randn(64, 2, dtype=DT)
    model = nn.Linear(4, 2).to(DT)
    opt = KFAC(model, lr=1.0, damping=1e-8, damping_mode="exact", momentum=0.0,
               mc_samples=400)
    xa = append_ones(x)
    best = 0.5 * (xa @ torch.linalg.lstsq(xa, y).solution - y).pow(2).sum() / 64
    for _ in range(3):
        opt.zero_grad()
        out = model(x)
        opt.update_curvature(out, "mse")
        loss = 0.5 * (out - y).pow(2).sum() / 64
        loss.backward()
        opt.step()
    final = 0.5 * (model(x) - y).pow(2).sum().item() / 64
    assert final < 1.01 * best.item()


def test_sampled_sigmoid_fisher_approaches_the_ggn_and_skips_masked_outputs():
    """Linear head, sigmoid cross-entropy (multi-label): the Bernoulli-sampled G approaches
    the exact GGN factor 1/N sum_n diag(w_n p_n (1 - p_n)); w = 0 (a missing label) removes
    that output's curvature entirely, NaN labels included."""
    torch.manual_seed(8)
    head = nn.Linear(3, 4).to(DT)
    x = torch.randn(6, 3, dtype=DT)
    weights = torch.ones(6, 4, dtype=DT)
    weights[0, 1] = weights[3, :] = 0.0
    opt = KFAC(head, mc_samples=4000)
    out = head(x)
    opt.update_curvature(out, "sigmoid_cross_entropy", weights=weights)
    p = torch.sigmoid(out.detach())
    exact = torch.diag_embed(weights * p * (1 - p)).mean(0)
    G = opt.state[head.weight]["G"]
    err = ((G - exact).norm() / exact.norm()).item()
    assert err < 0.05, err
    # Empirical Fisher with a NaN (missing) label that is masked: finite, and the masked
    # output contributes nothing: G[1, 1] sums only the examples whose label 1 is present.
    y = torch.bernoulli(torch.full((6, 4), 0.5, dtype=DT))
    y[0, 1] = float("nan")
    emp = KFAC(head, fisher="empirical")
    out = head(x)
    emp.update_curvature(out, "sigmoid_cross_entropy", targets=y, weights=weights)
    G = emp.state[head.weight]["G"]
    assert torch.isfinite(G).all()
    r = (p - torch.nan_to_num(y)) * weights
    torch.testing.assert_close(G, r.T @ r / 6)


def test_padding_weights_keep_padded_examples_out_of_g():
    """Cross-entropy with zero-weight padding examples: G sums only the real ones."""
    torch.manual_seed(9)
    head = nn.Linear(3, 4).to(DT)
    x, y = torch.randn(5, 3, dtype=DT), torch.randint(0, 4, (5,))
    weights = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0], dtype=DT)
    opt = KFAC(head, fisher="empirical")
    out = head(x)
    opt.update_curvature(out, "cross_entropy", targets=y, weights=weights)
    r = torch.softmax(out.detach(), -1) - F.one_hot(y, 4).to(DT)
    r = r[:3]
    torch.testing.assert_close(opt.state[head.weight]["G"], r.T @ r / 5)


def test_graph_segments_give_per_graph_factors_to_flat_node_layers():
    """A node MLP on a packed batch [M nodes, D] with per-node graph ids and a padding mask:
    with ``set_segments`` its factors are ``*_segments``'s (per graph); a layer whose rows
    match no layout (here: the per-graph readout) keeps plain per-row K-FAC."""
    from submissions.optimizers.kfac import (expand_factors, reduce_factors_segments)
    torch.manual_seed(10)
    node_layer, readout = nn.Linear(3, 4).to(DT), nn.Linear(4, 2).to(DT)
    ids = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3])  # graph 3 = padding
    mask = ids < 3
    x = torch.randn(8, 3, dtype=DT)
    y = torch.randn(4, 2, dtype=DT)
    model = nn.ModuleList([node_layer, readout])
    opt = KFAC(model, flavour="reduce", fisher="empirical")
    opt.set_segments([(ids, mask)], num_segments=4)
    h = node_layer(x)
    pooled = torch.zeros(4, 4, dtype=DT).index_add(0, ids, h * mask[:, None])
    out = readout(pooled)
    opt.update_curvature(out, "mse", targets=y, weights=(torch.arange(4) < 3)[:, None])
    g_h = (((out - y) * (torch.arange(4) < 3)[:, None]) @ readout.weight)[ids] * mask[:, None]
    A, G = reduce_factors_segments(append_ones(x), g_h.detach(), ids, 4, mask)
    torch.testing.assert_close(opt.state[node_layer.weight]["A"], A)
    torch.testing.assert_close(opt.state[node_layer.weight]["G"], G)
    A_plain, _ = expand_factors(append_ones(pooled.detach())[:, None], g_h.new_zeros(4, 1, 2))
    torch.testing.assert_close(opt.state[readout.weight]["A"], A_plain)
    assert not torch.allclose(A, expand_factors(append_ones(x)[:, None], g_h[:, None])[0])
    with pytest.raises(ValueError, match="two segment layouts have 8 rows"):
        opt.set_segments([(ids, mask), (ids, None)], num_segments=4)


def test_per_layer_weight_decay_overrides_the_groups_for_that_layer_only():
    """set_layer_weight_decays: p <- p (1 - lr wd_layer) for that layer (bias too), the
    group's decay for the other layer and for the parameters K-FAC does not cover."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    opt = KFAC(model, lr=0.1, weight_decay=0.01, momentum=0.0)
    assert opt.covered_modules == [model[0], model[2]]
    assert opt.factors(model[0]) is None
    opt.set_layer_weight_decays([0.5, None])
    before = copy.deepcopy(model)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only the decay moves the weights
    opt.step()
    for name, factor in (("0.weight", 0.95), ("0.bias", 0.95), ("2.weight", 0.999),
                         ("2.bias", 0.999)):
        torch.testing.assert_close(dict(model.named_parameters())[name],
                                   factor * dict(before.named_parameters())[name])
    with pytest.raises(ValueError, match="3 weight decays for 2 layers"):
        opt.set_layer_weight_decays([0.1, 0.1, 0.1])
