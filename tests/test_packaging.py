"""The dependency floors in pyproject.toml are true: the oldest allowed versions have the APIs
the code calls."""
import os
import re

import numpy as np
from packaging.version import Version

from tests.conftest import REPO


def floor(package: str) -> Version:
    with open(os.path.join(REPO, "pyproject.toml")) as f:
        text = f.read()
    match = re.search(rf'"{package}>=([0-9.]+)"', text)
    assert match, f"{package} has no floor in pyproject.toml"
    return Version(match.group(1))


def test_numpy_floor_has_trapezoid():
    # scoring.profiles integrates with numpy.trapezoid, added in NumPy 2.0 (np.trapz before).
    assert hasattr(np, "trapezoid")
    assert floor("numpy") >= Version("2.0")


def test_pandas_floor_supports_the_numpy_floor():
    # pandas releases before 2.2.2 were built against NumPy 1 and fail to import with NumPy 2.
    assert floor("pandas") >= Version("2.2.2")
