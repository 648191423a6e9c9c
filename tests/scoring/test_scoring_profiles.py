"""Ratios, performance profiles and both integrals, on hand-computed cases."""
import numpy as np
import pytest

from scoring import profiles, stats

INF = np.inf


def test_ratios_divide_by_the_column_best_and_all_miss_columns_never_count():
    times = np.array([[10.0, INF, 5.0], [20.0, INF, 5.0]])
    r = profiles.ratios(times)
    assert r.tolist() == [[1.0, INF, 1.0], [2.0, INF, 1.0]]  # ties: both are the best


def test_ratios_to_a_reference_submission():
    times = np.array([[10.0, 40.0], [20.0, 20.0]])
    r = profiles.ratios(times, reference=times[1:2])
    assert r.tolist() == [[0.5, 2.0], [1.0, 1.0]]


def test_profile_has_a_fixed_denominator():
    # Two workloads logged but 4 base workloads: the missing two count as misses.
    rho = profiles.profile(np.array([[1.0, 2.0]]), np.array([1.0, 1.5, 2.0, 4.0]), 4)
    assert rho.tolist() == [[0.25, 0.25, 0.5, 0.5]]


def test_trapezoid_score_by_hand():
    # One of two workloads at ratio 2.1: rho = 0.5 from tau_37 = 1 + 37/33 on the
    # 100-point grid tau_k = 1 + k/33. Trapezoids: one half-step (0 -> 0.5) and 62 full
    # steps at 0.5, each of width h = 3/99: area = 31.25 h; score = area / 3 = 31.25 / 99.
    score = profiles.score_trapezoid(np.array([[2.1, INF]]), 2)
    assert score[0] == pytest.approx(31.25 / 99, abs=1e-12)


def test_exact_score_by_hand():
    # rho = 0.5 on [2.1, 4] and 1.0 on [3, 4] for ratios (2.1, 3): area 0.5*1.9 + 0.5*1.
    score = profiles.score_exact(np.array([[2.1, 3.0]]), 2, r_max=4.0)
    assert score[0] == pytest.approx((0.5 * 1.9 + 0.5 * 1.0) / 3.0, abs=1e-12)


def test_trapezoid_converges_to_the_exact_integral():
    r = np.array([[1.0, 1.37, 2.9, INF], [3.99, 4.5, INF, INF]])
    exact = profiles.score_exact(r, 4)
    fine = profiles.score_trapezoid(r, 4, num_points=300_001)
    coarse = profiles.score_trapezoid(r, 4)
    assert np.allclose(fine, exact, atol=1e-5)
    assert not np.allclose(coarse, exact, atol=1e-5)  # 100 points is an approximation


@pytest.mark.parametrize("integral", profiles.INTEGRALS)
def test_scores_of_the_extremes(integral):
    r = np.array([[1.0, 1.0], [INF, INF], [5.0, INF]])  # best everywhere, all-miss, beyond
    scores = profiles.benchmark_scores(r, 2, integral=integral)
    assert scores[0] == pytest.approx(1.0) and scores[1] == 0.0
    assert scores[2] == 0.0


def test_r_max_widens_the_window():
    r = np.array([[6.0, INF]])
    assert profiles.score_exact(r, 2, r_max=4.0)[0] == 0.0
    assert profiles.score_exact(r, 2, r_max=8.0)[0] == pytest.approx(0.5 * 2.0 / 7.0)


def test_unknown_integral_is_rejected():
    with pytest.raises(ValueError, match="integral"):
        profiles.benchmark_scores(np.ones((1, 1)), 1, integral="simpson")


# ----------------------------------------------------------------------------- stats

def test_speedup_is_the_geometric_mean_over_shared_workloads():
    times = np.array([[10.0, 20.0, INF], [40.0, 5.0, 7.0]])
    speedup, count = stats.speedup_matrix(times)
    # a over b: sqrt((40/10) * (5/20)) = 1; the third workload is not shared.
    assert speedup[0, 1] == pytest.approx(1.0) and count[0, 1] == 2
    times[1, 1] = 80.0
    speedup, _ = stats.speedup_matrix(times)
    assert speedup[0, 1] == pytest.approx(np.sqrt(4.0 * 4.0))
    assert speedup[1, 0] == pytest.approx(1 / 4.0)


def test_bootstrap_resamples_whole_studies_with_misses_kept():
    # Two studies: one hit at 10 s, one miss. Medians of resamples: 10 (both draws the hit),
    # inf (both draws the miss) or median(10, inf) = inf.
    cube = [np.array([[10.0, INF]])]
    samples = stats.bootstrap_workload_times(cube, 2000, np.random.default_rng(0))
    values = set(np.unique(samples).tolist())
    assert values == {10.0, INF}
    assert 0.15 < np.mean(samples == 10.0) < 0.35  # P(both draws hit) = 1/4


def test_bootstrap_treats_studies_that_never_ran_a_workload_as_absent():
    cube = [np.array([[10.0, np.nan], [np.nan, np.nan]])]
    samples = stats.bootstrap_workload_times(cube, 200, np.random.default_rng(0))
    assert set(np.unique(samples[:, 0, 0]).tolist()) <= {10.0, INF}
    assert np.all(samples[:, 0, 1] == INF)  # never run at all: a miss


def test_percentile_interval():
    low, high = stats.percentile_interval(np.arange(101.0)[:, None], 0.9)
    assert low[0] == pytest.approx(5.0) and high[0] == pytest.approx(95.0)
