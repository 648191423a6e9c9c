"""K-FAC-reduce's blind spot: the key projection of softmax attention.

Shifting every key by the same vector c shifts all scores q . k_j by q . c, which the softmax
ignores, so the key layer's output gradients sum to exactly zero over tokens and reduce's G
(built from that sum) is zero whatever the curvature. Such a layer falls back to expand on
its first factor step with non-zero gradients; every other layer keeps its flavour.
"""
import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from submissions.optimizers.kfac import append_ones, expand_factors, reduce_factors
from submissions.optimizers.kfac.optimizer import KFAC

DT = torch.float64


class Attention(nn.Module):
    """One softmax attention head over R tokens, mean-pooled, then a linear head."""

    def __init__(self, d: int = 6, classes: int = 3):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.head = nn.Linear(d, classes)
        self.d = d

    def forward(self, x):  # x [N, R, d]
        scores = self.q(x) @ self.k(x).transpose(1, 2) / math.sqrt(self.d)
        return self.head((torch.softmax(scores, dim=-1) @ self.v(x)).mean(dim=1))


def data(seed=0, n=8, r=5, d=6):
    torch.manual_seed(seed)
    return torch.randn(n, r, d, dtype=DT), torch.randint(0, 3, (n,))


def output_grads(model, x, y):
    """Per-example loss gradients at the q, k, v outputs ([N, R, d] each), by autograd."""
    outputs = {}
    hooks = [getattr(model, n).register_forward_hook(
        lambda m, i, o, n=n: outputs.__setitem__(n, o)) for n in "qkv"]
    loss = F.cross_entropy(model(x), y, reduction="sum")
    for h in hooks:
        h.remove()
    grads = torch.autograd.grad(loss, [outputs[n] for n in "qkv"])
    return dict(zip("qkv", grads))


def test_key_gradients_sum_to_zero_over_tokens_and_the_others_do_not():
    model = Attention().to(DT)
    x, y = data()
    g = output_grads(model, x, y)
    ratio = {n: (g[n].sum(dim=1).pow(2).sum() / g[n].pow(2).sum()).item() for n in "qkv"}
    assert ratio["k"] < 1e-25
    assert ratio["q"] > 1e-2 and ratio["v"] > 1e-2


def test_the_key_layer_gets_expand_factors_and_the_rest_stay_reduce():
    model = Attention().to(DT)
    x, y = data()
    g = output_grads(model, x, y)
    opt = KFAC(model, flavour="reduce", fisher="empirical")
    out = model(x)
    assert opt.update_curvature(out, "cross_entropy", targets=y)
    flavours = {name: layer.flavour for name, layer in zip(["q", "k", "v", "head"], opt._layers)}
    assert flavours == {"q": "reduce", "k": "expand", "v": "reduce", "head": "reduce"}
    a = append_ones(x)
    for name, factors in (("k", expand_factors), ("q", reduce_factors), ("v", reduce_factors)):
        A, G = factors(a, g[name])
        state = opt.state[getattr(model, name).weight]
        assert torch.allclose(state["A"], A, rtol=1e-10, atol=1e-14)
        assert torch.allclose(state["G"], G, rtol=1e-10, atol=1e-14)
    # What reduce would have given the key layer: nothing.
    blind, seen = reduce_factors(a, g["k"])[1], expand_factors(a, g["k"])[1]
    assert blind.abs().max() < 1e-12 * seen.abs().max()


def test_no_decision_while_the_gradients_are_zero():
    """A zero head makes every gradient below it zero: the key layer is not settled until the
    head has moved, then it is (to expand)."""
    model = Attention().to(DT)
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    opt = KFAC(model, lr=0.1, flavour="reduce", fisher="empirical")
    x, y = data()
    key = opt._layers[1]
    for step in range(2):
        opt.zero_grad()
        out = model(x)
        opt.update_curvature(out, "cross_entropy", targets=y)
        F.cross_entropy(out, y).backward()
        opt.step()
        if step == 0:
            assert not key.settled and key.flavour == "reduce"
    assert key.settled and key.flavour == "expand"


def test_the_settled_flavour_is_checkpointed():
    def train(model, opt, steps, seed):
        torch.manual_seed(seed)
        x, y = data(seed)
        for _ in range(steps):
            opt.zero_grad()
            out = model(x)
            opt.update_curvature(out, "cross_entropy")
            F.cross_entropy(out, y).backward()
            opt.step()

    torch.manual_seed(5)
    model = Attention().to(DT)
    twin = copy.deepcopy(model)
    opt = KFAC(model, lr=0.05, flavour="reduce", inverse_every=2)
    train(model, opt, 3, seed=1)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    train(model, opt, 3, seed=2)
    opt2 = KFAC(twin, lr=0.05, flavour="reduce", inverse_every=2)
    twin.load_state_dict(saved_model)
    opt2.load_state_dict(saved_opt)
    assert [(layer.flavour, layer.settled) for layer in opt2._layers] == [
        ("reduce", True), ("expand", True), ("reduce", True), ("reduce", True)]
    train(twin, opt2, 3, seed=2)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)
