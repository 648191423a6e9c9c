"""The K-FAC evidence commands' arithmetic: the sweep's median with misses, its variants
per flavour, and the curvature statistics against closed forms on diagonal factors."""
import math

import pytest
import torch

from algoperf.suite import plan
from benchmarks import kfac_curvature_stats, kfac_sweep
from submissions.optimizers.kfac import inverse as ki


def test_sweep_median_counts_a_miss_as_worse_than_any_hit():
    assert kfac_sweep._median([80, None, 100]) == 100
    assert kfac_sweep._median([80, 90]) == 85
    assert kfac_sweep._median([None, None, 100]) is None  # the middle run missed
    assert kfac_sweep._median([80, None]) is None


def test_sweep_variants_change_only_what_they_name():
    assert "factors every step" not in kfac_sweep.variants_for("kfac_reduce")
    assert "factors every step" in kfac_sweep.variants_for("kfac_expand")
    base = plan.shipped_tiny_points("kfac_expand")[0]
    changed = dict(base, **kfac_sweep.VARIANTS["damping 0.003"])
    assert {k for k in base if base[k] != changed[k]} == {"damping"}
    assert kfac_sweep.VARIANTS["default"] == {}


def test_curvature_statistics_on_diagonal_factors():
    A = torch.diag(torch.tensor([4.0, 1.0, 0.25]))
    G = torch.diag(torch.tensor([2.0, 0.01]))
    damping = 0.1
    stats = kfac_curvature_stats.layer_statistics(A, G, damping)
    # Products s_A s_G: 8, 2, 0.5, 0.04, 0.01, 0.0025; three of six exceed 0.1.
    assert stats["above_damping"] == pytest.approx(0.5)
    d_a, d_g = ki.pi_split(A, G, damping)
    assert d_a * d_g == pytest.approx(damping)
    kappa = (4.0 + d_a) * (2.0 + d_g) / ((0.25 + d_a) * (0.01 + d_g))
    assert stats["log10_kappa"] == pytest.approx(math.log10(kappa), rel=1e-9)
    # Damping far above every product: no direction is curvature's, kappa tends to 1.
    flat = kfac_curvature_stats.layer_statistics(A, G, 1e6)
    assert flat["above_damping"] == 0.0 and flat["log10_kappa"] < 0.01
