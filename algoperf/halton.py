"""Generalized Halton sequences: low-discrepancy points in the unit cube [0, 1)^d.

The quasi-random draw behind external tuning (Bousquet et al., 2017, "Critical Hyper-Parameters:
No Random, No Cry", arXiv:1706.03200). Compared with i.i.d. uniform draws, the first N points of
a Halton sequence leave no large empty regions, so a small tuning budget covers the space evenly.

Radical inverse. Write a non-negative integer i in base b, i = sum_k a_k b^k with digits
a_k in {0, ..., b-1}. Its radical inverse mirrors the digits about the radix point:

    phi_b(i) = sum_k a_k b^-(k+1)          e.g. phi_2(1, 2, 3, 4, ...) = 1/2, 1/4, 3/4, 1/8, ...

Halton sequence. Point i in d dimensions uses the first d primes as bases:
x_i = (phi_2(i), phi_3(i), phi_5(i), ...). Its star discrepancy is O(log(N)^d / N), against
O(sqrt(log log N / N)) for i.i.d. points. Stratification: the first N = b_1^m_1 ... b_d^m_d
points (i = 0..N-1) put exactly one point in each box prod_j [c_j b_j^-m_j, (c_j+1) b_j^-m_j)
(Chinese remainder theorem); in particular the first b^m points of dimension base b hit every
interval of width b^-m once.

Generalized (scrambled) Halton. The plain sequence has no seed and, for larger bases, its
dimensions are strongly correlated over short runs of i (phi_11(i) and phi_13(i) both grow
linearly for i < 11). As in Braaten & Weller (1979) and Bousquet et al., the digits are
scrambled by random permutations; here digit position k of dimension j gets its own uniformly
random permutation sigma_jk of {0, ..., b-1}:

    phi_b^sigma(i) = sum_{k < K} sigma_k(a_k) b^-(k+1),      K = floor(53 / log2(b)),

where the sum runs over K positions (leading zero digits of i included) so that the scrambled
value of a single index is exactly uniform on the grid {0, b^-K, ..., 1 - b^-K}, whose spacing
b^-K >= 2^-53 float64 still resolves below 1. A permutation per
position maps digit strings one-to-one, so every stratification property above survives (unlike
a random shift mod 1, which cuts boxes at the wrap). Finally the N points are shuffled. The
permutations and the shuffle come from one seeded generator: same seed, same points.
"""
from typing import List, Sequence, Union

import numpy as np

ArrayLike = Union[int, Sequence[int], np.ndarray]


def first_primes(count: int) -> List[int]:
    """The first ``count`` primes, 2, 3, 5, ... (trial division: ``count`` is a few dozen)."""
    primes: List[int] = []
    candidate = 2
    while len(primes) < count:
        if all(candidate % p for p in primes if p * p <= candidate):
            primes.append(candidate)
        candidate += 1
    return primes


def _as_indices(indices: ArrayLike) -> np.ndarray:
    remaining = np.array(indices, dtype=np.int64)
    if np.any(remaining < 0):
        raise ValueError("Halton indices must be non-negative")
    return remaining


def radical_inverse(indices: ArrayLike, base: int) -> np.ndarray:
    """phi_b(i) = sum_k a_k b^-(k+1) for each non-negative integer index i (no scrambling).

    Returns:
      float64 array with the shape of ``indices``, values in [0, 1).
    """
    if base < 2:
        raise ValueError(f"base must be >= 2, got {base}")
    remaining = _as_indices(indices)
    value = np.zeros(remaining.shape, dtype=np.float64)
    scale = 1.0 / base
    # Peel off the least significant digit a_k each round; it lands at position b^-(k+1).
    while np.any(remaining > 0):
        value += (remaining % base) * scale
        remaining //= base
        scale /= base
    return value


def num_scrambled_digits(base: int) -> int:
    """K = floor(53 / log2(b)): the most base-b digits whose last step b^-K float64 resolves."""
    num_digits = 0
    while base ** (num_digits + 1) <= 2**53:  # exact integer arithmetic, no log rounding
        num_digits += 1
    return num_digits


def scrambled_radical_inverse(indices: ArrayLike, permutations: np.ndarray) -> np.ndarray:
    """phi_b^sigma(i) = sum_{k < K} sigma_k(a_k) b^-(k+1), one permutation per digit position.

    Args:
      indices: non-negative integers below b^K (scalar or array).
      permutations: integer array [K, b]; row k is sigma_k, a permutation of 0..b-1.

    Returns:
      float64 array with the shape of ``indices``, values in [0, 1).
    """
    permutations = np.asarray(permutations)
    num_digits, base = permutations.shape
    remaining = _as_indices(indices)
    if np.any(remaining >= float(base) ** num_digits):
        raise ValueError(f"indices must be below {base}^{num_digits}")
    value = np.zeros(remaining.shape, dtype=np.float64)
    scale = 1.0 / base
    # All K positions, not only the non-zero digits of i: the leading zeros are scrambled too.
    for sigma in permutations:
        value += sigma[remaining % base] * scale
        remaining //= base
        scale /= base
    # Rounding in the sum could still carry 1 - b^-K up to 1.0; the contract is [0, 1).
    return np.minimum(value, np.nextafter(1.0, 0.0))


def halton_sequence(num_points: int, num_dims: int, start: int = 0) -> np.ndarray:
    """Plain Halton points x_i = (phi_2(i), phi_3(i), ...) for i = start, ..., start + n - 1.

    Returns:
      float64 array of shape [num_points, num_dims].
    """
    indices = np.arange(start, start + num_points)
    columns = [radical_inverse(indices, base) for base in first_primes(num_dims)]
    return np.stack(columns, axis=1) if columns else np.zeros((num_points, 0))


def random_digit_permutations(base: int, rng: np.random.Generator) -> np.ndarray:
    """K = num_scrambled_digits(b) independent uniform permutations of 0..b-1, shape [K, b]."""
    return np.stack([rng.permutation(base) for _ in range(num_scrambled_digits(base))])


def scrambled_halton(num_points: int, num_dims: int, seed: int) -> np.ndarray:
    """The first ``num_points`` generalized Halton points, digit-scrambled and shuffled.

    Dimension j uses the j-th prime as base and its own digit permutations, drawn dimension by
    dimension from ``numpy.random.default_rng(seed)``; the rows are then shuffled with the same
    generator. Indices start at 0 so the stratification in the module docstring holds for the
    whole draw. The shuffle makes a trial's position carry no information about its values
    (as in AlgoPerf); the set of points does not depend on it.

    Returns:
      float64 array of shape [num_points, num_dims], values in [0, 1).
    """
    rng = np.random.default_rng(seed)
    indices = np.arange(num_points)
    columns = [scrambled_radical_inverse(indices, random_digit_permutations(base, rng))
               for base in first_primes(num_dims)]
    points = np.stack(columns, axis=1) if columns else np.zeros((num_points, 0))
    return points[rng.permutation(num_points)]
