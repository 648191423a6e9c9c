"""Search spaces: the Halton sequence, loading tuning_search_space.json, drawing trials."""
import copy
import glob
import json
import math
import os
import pickle
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from algoperf import halton
from algoperf.search_space import (
    FeasiblePoints,
    Interval,
    SearchSpaceError,
    draw_hyperparameters,
    hyperparameters_from_dict,
    hyperparameters_to_dict,
    load_search_space,
    parse_search_space,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The shape of AlgoPerf's NAdamW baseline search space: log ranges, constants, small choices.
NADAMW_LIKE = {
    "learning_rate": {"min": 2e-4, "max": 2e-3, "scaling": "log"},
    "one_minus_beta1": {"min": 3e-3, "max": 0.1, "scaling": "log"},
    "beta2": {"feasible_points": [0.999]},
    "warmup_factor": {"feasible_points": [0.05]},
    "weight_decay": {"min": 5e-3, "max": 1.0, "scaling": "log"},
    "label_smoothing": {"feasible_points": [0.1, 0.2]},
    "dropout_rate": {"feasible_points": [0.0, 0.1]},
}


def write_json(tmp_path, obj, name="tuning_search_space.json"):
    path = tmp_path / name
    path.write_text(json.dumps(obj, indent=2))
    return path


def star_discrepancy_2d(points):
    """Exact D*_N = sup_{x,y} |#{p < (x,y)}/N - x y| for N points in [0,1)^2.

    The supremum is reached with each of x and y at a point coordinate or 1, approached from
    above (closed box: count <=) or below (open box: count <).
    """
    n = len(points)
    xs = np.append(np.sort(points[:, 0]), 1.0)[:, None]
    ys = np.append(np.sort(points[:, 1]), 1.0)[None, :]
    px, py = points[:, 0][:, None, None], points[:, 1][:, None, None]
    closed = ((px <= xs) & (py <= ys)).sum(axis=0) / n
    open_ = ((px < xs) & (py < ys)).sum(axis=0) / n
    volume = xs * ys
    return max((closed - volume).max(), (volume - open_).max())


# --------------------------------------------------------------------------- Halton


def test_first_primes():
    assert halton.first_primes(10) == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert halton.first_primes(0) == []


def test_radical_inverse_base2_and_base3_first_terms():
    base2 = halton.radical_inverse(np.arange(8), 2)
    np.testing.assert_array_equal(base2, [0, 1 / 2, 1 / 4, 3 / 4, 1 / 8, 5 / 8, 3 / 8, 7 / 8])
    base3 = halton.radical_inverse(np.arange(10), 3)
    expected = [0, 1 / 3, 2 / 3, 1 / 9, 4 / 9, 7 / 9, 2 / 9, 5 / 9, 8 / 9, 1 / 27]
    np.testing.assert_allclose(base3, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("base", [2, 3, 5, 7, 13])
def test_radical_inverse_matches_digit_reversal(base):
    # Independent closed form: reverse the base-b digit string of i behind the radix point.
    def reference(i):
        digits = np.base_repr(i, base)
        return Fraction(int(digits[::-1], base), base ** len(digits)) if i else Fraction(0)

    indices = np.arange(500)
    got = halton.radical_inverse(indices, base)
    want = np.array([float(reference(int(i))) for i in indices])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)


def test_halton_sequence_columns_use_successive_primes():
    points = halton.halton_sequence(4, 3, start=1)
    np.testing.assert_allclose(points, [[1 / 2, 1 / 3, 1 / 5],
                                        [1 / 4, 2 / 3, 2 / 5],
                                        [3 / 4, 1 / 9, 3 / 5],
                                        [1 / 8, 4 / 9, 4 / 5]])


def test_scrambled_radical_inverse_with_identity_permutations_is_plain():
    base = 3
    identity = np.tile(np.arange(base), (halton.num_scrambled_digits(base), 1))
    indices = np.arange(1000)
    np.testing.assert_allclose(halton.scrambled_radical_inverse(indices, identity),
                               halton.radical_inverse(indices, base), rtol=0, atol=1e-15)


def test_num_scrambled_digits_is_resolvable_in_float64():
    for base in halton.first_primes(12):
        k = halton.num_scrambled_digits(base)
        assert base**k <= 2**53 < base ** (k + 1)


@pytest.mark.parametrize("seed", range(5))
def test_scrambled_halton_is_stratified_per_dimension(seed):
    # First b^m points of the base-b dimension: exactly one in each interval of width b^-m.
    points = halton.scrambled_halton(81, 2, seed)
    assert np.all((points >= 0) & (points < 1))
    first64 = halton.scrambled_halton(64, 1, seed)[:, 0]
    np.testing.assert_array_equal(np.bincount((first64 * 64).astype(int), minlength=64), 1)
    np.testing.assert_array_equal(np.bincount((points[:, 1] * 81).astype(int), minlength=81), 1)


@pytest.mark.parametrize("seed", range(5))
def test_scrambled_halton_is_stratified_in_boxes(seed):
    # N = 4 * 9: each box [j/4, (j+1)/4) x [k/9, (k+1)/9) holds exactly one point (CRT), and
    # digit scrambling keeps it (a shift mod 1 would not).
    points = halton.scrambled_halton(36, 2, seed)
    cells = (points[:, 0] * 4).astype(int) * 9 + (points[:, 1] * 9).astype(int)
    np.testing.assert_array_equal(np.bincount(cells, minlength=36), 1)


def test_scrambled_halton_has_low_discrepancy():
    # 64 points in 2-D, 20 seeds. Measured: Halton D* <= 0.066 (mean 0.052); i.i.d. uniform
    # draws with the same seeds >= 0.089 (mean 0.146).
    halton_d = [star_discrepancy_2d(halton.scrambled_halton(64, 2, s)) for s in range(20)]
    iid_d = [star_discrepancy_2d(np.random.default_rng(s).random((64, 2))) for s in range(20)]
    assert max(halton_d) < 0.075
    assert max(halton_d) < min(iid_d)
    assert np.mean(halton_d) < 0.5 * np.mean(iid_d)


def test_star_discrepancy_helper_on_a_known_set():
    # One point at (0.5, 0.5): the closed box [0, 0.5]^2 holds it (fraction 1, volume 1/4).
    assert star_discrepancy_2d(np.array([[0.5, 0.5]])) == pytest.approx(0.75)


def test_scrambled_halton_seeded():
    a = halton.scrambled_halton(16, 3, seed=7)
    np.testing.assert_array_equal(a, halton.scrambled_halton(16, 3, seed=7))
    assert not np.array_equal(a, halton.scrambled_halton(16, 3, seed=8))
    assert halton.scrambled_halton(5, 0, seed=0).shape == (5, 0)


# --------------------------------------------------------------------------- drawing


def test_draws_stay_inside_bounds(tmp_path):
    space = load_search_space(write_json(tmp_path, {
        "learning_rate": {"min": 1e-5, "max": 1e-1, "scaling": "log"},
        "warmup": {"min": -2, "max": 3, "scaling": "linear"},
        "decay": {"min": 0.9, "max": 0.999, "scaling": "log"},
        "tiny": {"min": 1e-300, "max": 1e-299, "scaling": "log"},
    }))
    for seed in range(3):
        hps = draw_hyperparameters(space, 500, seed)
        for name, dim in zip(space.names, space.dimensions):
            values = np.array([getattr(h, name) for h in hps])
            assert values.min() >= dim.low and values.max() <= dim.high, name
            # ... and they fill it: the Halton coverage reaches within 1% of both ends.
            unit = (values - dim.low) / (dim.high - dim.low) if dim.scaling == "linear" else \
                np.log(values / dim.low) / math.log(dim.high / dim.low)
            assert unit.min() < 0.01 and unit.max() > 0.99, name


def test_log_scaling_is_uniform_in_log_space():
    space = parse_search_space({"lr": {"min": 1e-5, "max": 1e-1, "scaling": "log"},
                                "x": {"min": 0.0, "max": 1.0, "scaling": "linear"}})
    for seed in range(3):
        hps = draw_hyperparameters(space, 1000, seed)
        lr = np.array([h.lr for h in hps])
        x = np.array([h.x for h in hps])
        # Median at the geometric mean 1e-3 (the arithmetic mean would be ~0.05).
        assert abs(math.log10(np.median(lr)) + 3) < 0.01
        # Kolmogorov-Smirnov distance to uniform: measured <= 0.003; i.i.d. draws give ~0.02-0.04.
        assert stats.kstest((np.log10(lr) + 5) / 4, "uniform").statistic < 0.005
        assert stats.kstest(x, "uniform").statistic < 0.005
        assert abs(np.median(x) - 0.5) < 0.01


def test_feasible_points_take_only_listed_values_and_all_of_them():
    space = parse_search_space({
        "lr": {"min": 1e-4, "max": 1e-2, "scaling": "log"},
        "batch_norm": {"feasible_points": ["none", "pre", "post"]},
        "layers": {"feasible_points": [2, 4, 8, 16, 32]},
        "nesterov": {"feasible_points": [True, False]},
    })
    for seed in range(5):
        hps = draw_hyperparameters(space, 90, seed)
        for name, dim in zip(space.names[1:], space.dimensions[1:]):
            drawn = [getattr(h, name) for h in hps]
            assert set(drawn) == set(dim.values), name
            # Each value with frequency 1/K: the Halton draw keeps counts within 2 of N/K.
            counts = np.array([drawn.count(v) for v in dim.values])
            assert np.abs(counts - 90 / len(dim.values)).max() <= 2, (name, counts)
            # The file's own types survive (int stays int, no numpy scalars).
            assert {type(v) for v in drawn} == {type(v) for v in dim.values}


def test_constants_take_no_halton_dimension():
    varying = {"lr": {"min": 1e-4, "max": 1e-2, "scaling": "log"},
               "wd": {"feasible_points": [0.0, 0.1, 0.5]}}
    with_constants = {"beta2": {"feasible_points": [0.999]},
                      "lr": varying["lr"],
                      "warmup": {"min": 0.05, "max": 0.05, "scaling": "linear"},
                      "wd": varying["wd"]}
    a = draw_hyperparameters(parse_search_space(varying), 20, seed=3)
    b = draw_hyperparameters(parse_search_space(with_constants), 20, seed=3)
    assert [(h.lr, h.wd) for h in a] == [(h.lr, h.wd) for h in b]
    assert {h.beta2 for h in b} == {0.999} and {h.warmup for h in b} == {0.05}


def test_draw_is_deterministic_per_seed_and_differs_across_seeds():
    space = parse_search_space(NADAMW_LIKE)
    assert draw_hyperparameters(space, 8, seed=11) == draw_hyperparameters(space, 8, seed=11)
    firsts = {draw_hyperparameters(space, 8, seed=s)[0].learning_rate for s in range(10)}
    assert len(firsts) == 10


def test_hyperparameters_namedtuple_fields_types_and_order(tmp_path):
    space = load_search_space(write_json(tmp_path, NADAMW_LIKE))
    (hp,) = draw_hyperparameters(space, 1, seed=0)
    assert type(hp).__name__ == "Hyperparameters"
    assert hp._fields == tuple(NADAMW_LIKE)  # file order, as in AlgoPerf
    assert type(hp.learning_rate) is float and type(hp.beta2) is float
    assert hp.beta2 == 0.999 and hp.warmup_factor == 0.05
    # One class per field tuple: draws from one space share a type.
    assert type(draw_hyperparameters(space, 1, seed=1)[0]) is type(hp)


def test_integer_bounds_give_floats():
    (hp,) = draw_hyperparameters(parse_search_space(
        {"steps": {"min": 1, "max": 10, "scaling": "linear"}}), 1, seed=0)
    assert type(hp.steps) is float and 1 <= hp.steps <= 10


@pytest.mark.parametrize("num_trials", [0, -1, 2.0, True, None])
def test_bad_num_trials(num_trials):
    with pytest.raises(ValueError, match="num_trials"):
        draw_hyperparameters(parse_search_space(NADAMW_LIKE), num_trials, seed=0)


@pytest.mark.parametrize("seed", [-1, 1.5, None])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        draw_hyperparameters(parse_search_space(NADAMW_LIKE), 2, seed=seed)


# --------------------------------------------------------------------------- list form


POINTS = [
    {"learning_rate": 0.001, "one_minus_beta1": 0.1, "warmup_factor": 0.05, "optimizer": "adam"},
    {"learning_rate": 0.003, "warmup_factor": 0.02, "one_minus_beta1": 0.05, "optimizer": "sgd"},
    {"learning_rate": 0.01, "one_minus_beta1": 0.01, "warmup_factor": 0.1, "optimizer": "adam"},
]


def test_point_list_is_used_in_order(tmp_path):
    space = load_search_space(write_json(tmp_path, POINTS))
    assert space.is_point_list and space.names == tuple(POINTS[0])
    hps = draw_hyperparameters(space, 2, seed=123)
    assert [hyperparameters_to_dict(h) for h in hps] == [
        {k: p[k] for k in POINTS[0]} for p in POINTS[:2]]
    assert hps[1]._fields == tuple(POINTS[0])  # first entry's order, whatever the others use
    # The seed plays no part in the list form.
    assert draw_hyperparameters(space, 3, seed=0) == draw_hyperparameters(space, 3, seed=9)


def test_point_list_shorter_than_trials_names_the_file(tmp_path):
    path = write_json(tmp_path, POINTS)
    with pytest.raises(SearchSpaceError) as info:
        draw_hyperparameters(load_search_space(path), 4, seed=0)
    assert str(path) in str(info.value) and "only 3 point" in str(info.value)


# --------------------------------------------------------------------------- errors


MALFORMED = {
    "not_json": ('{\n  "lr": {"min": 1e-4, "max": 1e-2, "scaling": "log"}\n  "wd": {}\n}',
                 "not valid JSON: Expecting ',' delimiter (line 3, column 3)"),
    "empty_file": ("", "the file is empty"),
    "top_level_number": ("3", "top level must be an object"),
    "empty_object": ("{}", "defines no hyperparameters"),
    "spec_not_object": ('{"lr": 0.1}', "'lr' must be an object"),
    "unknown_scaling": ('{"lr": {"min": 1e-4, "max": 1e-2, "scaling": "exp"}}',
                        'unknown scaling "exp"'),
    "scaling_wrong_case": ('{"lr": {"min": 1e-4, "max": 1e-2, "scaling": "Log"}}',
                           'unknown scaling "Log"'),
    "min_greater_than_max": ('{"lr": {"min": 0.1, "max": 0.01, "scaling": "linear"}}',
                             "min 0.1 is greater than max 0.01"),
    "log_min_zero": ('{"lr": {"min": 0, "max": 0.01, "scaling": "log"}}',
                     "log scaling needs min > 0, got min 0"),
    "log_min_negative": ('{"lr": {"min": -1e-3, "max": 0.01, "scaling": "log"}}',
                         "log scaling needs min > 0"),
    "missing_scaling": ('{"lr": {"min": 1e-4, "max": 1e-2}}', "missing key(s) ['scaling']"),
    "missing_max": ('{"lr": {"min": 1e-4, "scaling": "log"}}', "missing key(s) ['max']"),
    "unknown_key": ('{"lr": {"min": 1e-4, "max": 1e-2, "scalling": "log"}}',
                    "unknown key(s) ['scalling']"),
    "string_bound": ('{"lr": {"min": "1e-4", "max": 1e-2, "scaling": "log"}}',
                     "'min' must be a number, got a string \"1e-4\""),
    "boolean_bound": ('{"lr": {"min": 0, "max": true, "scaling": "linear"}}',
                      "'max' must be a number, got a boolean true"),
    "nan_bound": ('{"lr": {"min": NaN, "max": 1, "scaling": "linear"}}',
                  "'min' is nan, expected a finite number"),
    "empty_feasible_points": ('{"dropout": {"feasible_points": []}}',
                              "'feasible_points' is empty"),
    "feasible_points_not_list": ('{"dropout": {"feasible_points": 0.1}}',
                                 "'feasible_points' must be a list, got a number"),
    "feasible_point_is_a_list": ('{"betas": {"feasible_points": [[0.9, 0.99]]}}',
                                 "feasible point 0 is a list"),
    "feasible_and_range": ('{"d": {"feasible_points": [0.1], "min": 0, "max": 1}}',
                           "cannot be combined with ['max', 'min']"),
    "bad_name": ('{"learning-rate": {"feasible_points": [0.1]}}',
                 "name 'learning-rate' is not usable"),
    "keyword_name": ('{"lambda": {"feasible_points": [0.1]}}', "name 'lambda' is not usable"),
    "underscore_name": ('{"_lr": {"feasible_points": [0.1]}}', "name '_lr' is not usable"),
    "duplicate_key": ('{"lr": {"feasible_points": [0.1]}, "lr": {"feasible_points": [1]}}',
                      "key 'lr' appears twice"),
    "empty_list": ("[]", "the list of points is empty"),
    "list_entry_not_object": ('[{"lr": 0.1}, 0.2]', "point 1 must be an object"),
    "list_entry_empty": ("[{}]", "point 0 defines no hyperparameters"),
    "list_different_keys": ('[{"lr": 0.1, "wd": 0.0}, {"lr": 0.2, "b2": 0.9}]',
                            "point 1 has different hyperparameters from point 0 "
                            "(missing ['wd'], extra ['b2'])"),
    "list_nonfinite_value": ('[{"lr": Infinity}]', "point 0: hyperparameter 'lr' is inf"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_raises_one_clear_error(tmp_path, case):
    text, problem = MALFORMED[case]
    path = tmp_path / f"{case}.json"
    path.write_text(text)
    with pytest.raises(SearchSpaceError) as info:
        load_search_space(path)
    message = str(info.value)
    assert str(path) in message, message
    assert problem in message, message
    assert info.value.path == str(path)
    assert isinstance(info.value, ValueError)


def test_unreadable_files_raise_search_space_error(tmp_path):
    cases = {tmp_path / "missing.json": "no such file",
             tmp_path: "is a directory"}
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"taux": {"feasible_points": ["é"]}}'.encode("latin-1"))
    cases[latin1] = "not UTF-8"
    for path, problem in cases.items():
        with pytest.raises(SearchSpaceError, match=problem) as info:
            load_search_space(path)
        assert str(path) in str(info.value)


# --------------------------------------------------------------------------- hparams.json


def test_hyperparameters_dict_round_trip_through_json(tmp_path):
    hps = draw_hyperparameters(parse_search_space(NADAMW_LIKE), 3, seed=0)
    for hp in hps:
        path = tmp_path / "hparams.json"
        path.write_text(json.dumps(hyperparameters_to_dict(hp), indent=2))
        restored = hyperparameters_from_dict(json.loads(path.read_text()))
        assert restored == hp and restored._fields == hp._fields
        assert type(restored) is type(hp)


def test_hyperparameters_from_a_real_algoperf_hparams_json():
    # The body of an AlgoPerf v0.5 log's trial_1/hparams.json (list-form submission).
    hp = hyperparameters_from_dict({
        "dropout_rate": 0.1, "label_smoothing": 0.0, "learning_rate": 0.0017486387539278373,
        "one_minus_beta1": 0.06733926164, "beta2": 0.9955159689799007,
        "weight_decay": 0.08121616522670176, "warmup_factor": 0.02})
    assert hp.learning_rate == 0.0017486387539278373 and hp._fields[0] == "dropout_rate"


def test_hyperparameters_to_dict_gives_plain_python():
    hp = hyperparameters_from_dict({"lr": np.float32(0.5), "steps": np.int64(3), "opt": "adam"})
    d = hyperparameters_to_dict(hp)
    assert d == {"lr": 0.5, "steps": 3, "opt": "adam"}
    assert type(d["lr"]) is float and type(d["steps"]) is int
    json.dumps(d)
    with pytest.raises(TypeError):
        hyperparameters_to_dict({"lr": 0.1})


def test_hyperparameters_from_dict_rejects_bad_names(tmp_path):
    path = tmp_path / "trial_1" / "hparams.json"
    with pytest.raises(ValueError, match="trial_1.*'learning-rate' is not usable"):
        hyperparameters_from_dict({"learning-rate": 0.1}, path=path)
    with pytest.raises(ValueError, match="non-empty"):
        hyperparameters_from_dict({})


def test_hyperparameters_survive_pickle_and_deepcopy():
    # Checkpoints may hold them (e.g. inside a submission's optimizer state).
    (hp,) = draw_hyperparameters(parse_search_space(NADAMW_LIKE), 1, seed=0)
    assert pickle.loads(pickle.dumps(hp)) == hp
    clone = copy.deepcopy(hp)
    assert clone == hp and type(clone) is type(hp)


# --------------------------------------------------------------------------- shipped spaces


def test_parsed_dimensions():
    space = parse_search_space(NADAMW_LIKE)
    assert space.dimensions[0] == Interval("learning_rate", 2e-4, 2e-3, "log")
    assert space.dimensions[2] == FeasiblePoints("beta2", (0.999,))
    assert not space.is_point_list


SHIPPED = sorted(glob.glob(os.path.join(REPO, "submissions", "**", "tuning_search_space*.json"),
                           recursive=True))


@pytest.mark.parametrize("path", SHIPPED or [None])
def test_shipped_search_spaces_load_and_draw(path):
    if path is None:
        pytest.skip("no submissions/ search spaces yet")
    space = load_search_space(path)
    num_trials = min(5, len(space.points)) if space.is_point_list else 5
    assert len(draw_hyperparameters(space, num_trials, seed=0)) == num_trials
