"""Our K-FAC factors against an independent implementation: curvlinops' KFACLinearOperator.

Both sides see the same model, data and loss: ``MSELoss(reduction="sum")``, i.e. the summed
loss sum_n l_n with l_n = sum ||f_n - y_n||^2 (loss Hessian 2 I). curvlinops approximates the
GGN of that sum; ours (``factors.py``) that of the mean 1/N sum_n l_n, so N kron(G, A) is
compared with curvlinops' kron(G, A). Our output gradients are the backward passes of the
columns of the per-example loss Hessian's square root (sqrt(2) times the rows of
d f_n / d s, one per output coordinate), the GGN's exact definition.

- Where the two definitions agree (expand in both settings, reduce where R is pooled before
  the loss, Linear and Conv2d) the factors are equal to float64 round-off.
- K-FAC-reduce with a per-position loss: curvlinops' type-2 G is R times ours in these
  networks, and its own Monte-Carlo estimate converges to ours, not to its type-2 factor
  (the convention and its derivation are in ``factors.py``).
"""
import math

import pytest
import torch
from torch import nn

from submissions.optimizers.kfac import (append_ones, conv2d_inputs, conv2d_output_grads,
                                         expand_factors, linear_inputs, reduce_factors)

curvlinops = pytest.importorskip("curvlinops")

DT = torch.float64
EXACT = 1e-12
N = 3


class DeepLinear(nn.Module):
    """Linear layers on [N, R, D]; ``pool_after=k``: mean over R after layer k."""

    def __init__(self, dims, pool_after=None):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.pool_after = pool_after

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == self.pool_after:
                x = x.mean(dim=1)
        return x


class ConvNet(nn.Module):
    """conv 3x3 (padding 1) -> per pixel: a 1x1 linear head on every pixel [N, H*W, C] |
    pooled: global mean pool, then the linear head [N, C]."""

    def __init__(self, pooled):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.head = nn.Linear(3, 2)
        self.pooled = pooled

    def forward(self, x):
        s = self.conv(x)
        h = s.mean(dim=(2, 3)) if self.pooled else s.flatten(2).transpose(1, 2)
        return self.head(h)


def layer_io(module: nn.Module, a_in: torch.Tensor, s_grad: torch.Tensor):
    """A layer's (a [N, R, D_in + 1], g [N, R, D_out]) in factors.py's layout."""
    if isinstance(module, nn.Conv2d):
        a = conv2d_inputs(a_in, module.kernel_size, module.stride, module.padding,
                          module.dilation)
        return append_ones(a), conv2d_output_grads(s_grad)
    return append_ones(linear_inputs(a_in)), linear_inputs(s_grad)


def our_factors(model: nn.Module, x: torch.Tensor, flavour: str):
    """{layer name: (A, G)} from the exact GGN's backward passes (one per output coordinate
    of an example: the columns of sqrt(2) I)."""
    layers = {name: m for name, m in model.named_modules()
              if isinstance(m, (nn.Linear, nn.Conv2d))}
    inputs, outputs = {}, {}

    def keep(name):
        def hook(module, args, out):
            inputs[name] = args[0].detach()
            outputs[name] = out
            out.retain_grad()
        return hook
    handles = [m.register_forward_hook(keep(name)) for name, m in layers.items()]
    f = model(x).reshape(x.shape[0], -1)
    for h in handles:
        h.remove()
    grads = {name: [] for name in layers}
    for j in range(f.shape[1]):  # examples are independent: one pass serves all N
        for out in outputs.values():
            out.grad = None
        f[:, j].sum().backward(retain_graph=True)
        for name in layers:
            grads[name].append(math.sqrt(2.0) * outputs[name].grad.detach())
    factors = expand_factors if flavour == "expand" else reduce_factors
    result = {}
    for name, module in layers.items():
        pairs = [layer_io(module, inputs[name], g) for g in grads[name]]
        a = pairs[0][0]
        result[name] = factors(a, torch.stack([g for _, g in pairs]))
    return result


def curvlinops_factors(model, x, y, flavour, fisher_type="type-2", mc_samples=1):
    """{layer name: (A, G)} of curvlinops' K-FAC for the summed MSE loss."""
    positions = y[0].numel() // y.shape[-1]
    op = curvlinops.KFACLinearOperator(
        model, nn.MSELoss(reduction="sum"), list(model.parameters()), [(x, y)],
        fisher_type=fisher_type, mc_samples=mc_samples, kfac_approx=flavour,
        num_per_example_loss_terms=positions, separate_weight_and_bias=False,
        check_deterministic=False)
    op.compute_kronecker_factors()
    return {name: (op._input_covariances[name], op._gradient_covariances[name])
            for name in op._input_covariances}


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def setting(name):
    """(model, x, y): per-position loss (R kept) or R pooled before the loss."""
    torch.manual_seed(0)
    if name.startswith("linear"):
        model = DeepLinear([3, 4, 2], pool_after=0 if name == "linear_pooled" else None)
        x = torch.randn(N, 4, 3)
    else:
        model = ConvNet(pooled=name == "conv_pooled")
        x = torch.randn(N, 2, 4, 4)
    model, x = model.to(DT), x.to(DT)
    with torch.no_grad():
        y = torch.randn_like(model(x))
    return model, x, y


@pytest.mark.parametrize("name,flavour", [
    ("linear_per_position", "expand"), ("linear_pooled", "expand"),
    ("linear_pooled", "reduce"), ("conv_per_pixel", "expand"), ("conv_pooled", "expand"),
    ("conv_pooled", "reduce")])
def test_the_factors_equal_curvlinops_where_the_definitions_agree(name, flavour):
    model, x, y = setting(name)
    ours = our_factors(model, x, flavour)
    theirs = curvlinops_factors(model, x, y, flavour)
    assert set(ours) == set(theirs)
    for layer, (A, G) in ours.items():
        A_c, G_c = theirs[layer]
        assert rel(A, A_c) < EXACT, layer
        assert rel(N * G, G_c) < EXACT, layer
        assert rel(N * torch.kron(G, A), torch.kron(G_c, A_c)) < EXACT, layer


@pytest.mark.parametrize("name", ["linear_per_position", "conv_per_pixel"])
def test_reduce_with_a_per_position_loss_is_curvlinops_type2_over_r(name):
    """Our G is exactly 1/R of curvlinops' type-2 G here (R = 4 tokens or 16 pixels; A is
    the same); the factor is the cross-position terms its shared backward passes add."""
    model, x, y = setting(name)
    R = y[0].numel() // y.shape[-1]
    ours = our_factors(model, x, "reduce")
    theirs = curvlinops_factors(model, x, y, "reduce")
    for layer, (A, G) in ours.items():
        A_c, G_c = theirs[layer]
        assert rel(A, A_c) < EXACT, layer
        assert rel(R * N * G, G_c) < EXACT, layer
        assert rel(N * G, G_c) > 0.5, layer   # negative check: the two scales differ


def test_curvlinops_monte_carlo_reduce_converges_to_ours_not_to_its_type2():
    """Its Monte-Carlo Fisher samples every position's label independently; the expected
    cross-position terms vanish, and the estimate approaches our G (error ~ 1/sqrt(M))."""
    model, x, y = setting("linear_per_position")
    (G,) = [g for name, (_, g) in our_factors(model, x, "reduce").items() if name == "layers.0"]
    type2 = curvlinops_factors(model, x, y, "reduce")["layers.0"][1]
    errors = []
    for samples in (100, 3000):
        mc = curvlinops_factors(model, x, y, "reduce", "mc", samples)["layers.0"][1]
        errors.append((rel(mc, N * G), rel(mc, type2)))
    print(f"MC reduce G: M=100 {errors[0]}, M=3000 {errors[1]} (vs ours, vs its type-2)")
    assert errors[1][0] < 0.06 and errors[1][0] < errors[0][0]
    assert errors[1][1] > 0.5
