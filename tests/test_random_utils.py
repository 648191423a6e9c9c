"""Splittable seeds: deterministic, distinct where they must be, and cheap composition."""
import numpy as np
import pytest

from algoperf import random_utils as prng


def test_mixer_is_splitmix64_finaliser():
    # Reference values of the splitmix64 generator seeded with 0: its outputs are
    # mix(k * golden) for k = 1, 2, ... (Steele, Lea and Flood 2014; widely published).
    assert prng._mix(1 * prng._GOLDEN) == 0xE220A8397B1DCDAF
    assert prng._mix(2 * prng._GOLDEN) == 0x6E789E6AA1B965F4


def test_keys_are_deterministic_and_children_distinct():
    key = prng.PRNGKey(42)
    assert key.dtype == np.uint32 and key.shape == (2,)
    np.testing.assert_array_equal(prng.split(key, 4), prng.split(prng.PRNGKey(42), 4))
    children = prng.split(key, 64)
    assert len({tuple(c) for c in children}) == 64
    assert not any((c == key).all() for c in children)


def test_fold_in_separates_steps_and_seeds():
    key = prng.PRNGKey(0)
    steps = {tuple(prng.fold_in(key, step)) for step in range(1000)}
    assert len(steps) == 1000
    assert tuple(prng.fold_in(prng.PRNGKey(1), 5)) != tuple(prng.fold_in(key, 5))


def test_fold_in_and_split_is_the_composition():
    key = prng.PRNGKey(123)
    for step in (0, 1, 99999):
        np.testing.assert_array_equal(prng.fold_in_and_split(key, step, 4),
                                      prng.split(prng.fold_in(key, step), 4))


def test_trial_keys_differ_across_studies_and_trials():
    keys = {tuple(prng.key_for_trial(7, study, trial)) for study in range(5)
            for trial in range(6)}
    assert len(keys) == 30


def test_to_int_is_a_valid_torch_seed_and_seed_bounds():
    for seed in (0, 1, 2**40, 2**64 - 1):
        assert 0 <= prng.to_int(prng.PRNGKey(seed)) < 2**31
    with pytest.raises(ValueError):
        prng.PRNGKey(-1)
