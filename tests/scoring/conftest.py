"""Fixtures of the scoring tests: the hand-made mini tree and the real AlgoPerf v0.5 logs."""
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from scoring_logs import REPO, write_mini_tree, write_targets

# pytest puts tests/ on sys.path, where tests/scoring/ would pass for a namespace package
# called `scoring` unless the repository root comes first (plain `pytest`, no PYTHONPATH).
if REPO not in sys.path:
    sys.path.insert(0, REPO)

SHARED_V05 = os.path.join(os.path.dirname(REPO), "shared", "algoperf_v05")


@pytest.fixture(scope="session")
def mini_root(tmp_path_factory):
    return write_mini_tree(str(tmp_path_factory.mktemp("mini_logs")))


@pytest.fixture(scope="session")
def mini_targets(tmp_path_factory):
    return write_targets(str(tmp_path_factory.mktemp("targets") / "mini_targets.json"))


@pytest.fixture(scope="session")
def v05_shared():
    """``<repo>/../shared/algoperf_v05``: the real logs, frozen targets and published scores."""
    if not os.path.exists(os.path.join(SHARED_V05, "logs.tar.xz")):
        pytest.skip(f"AlgoPerf v0.5 logs not found at {SHARED_V05} (../shared is only present "
                    "in this project's own checkout); the mini-tree tests still cover scoring")
    return SHARED_V05


@pytest.fixture(scope="session")
def v05_logs(v05_shared, tmp_path_factory):
    """The archive unpacked once per session; returns the folder holding the two rulesets."""
    root = tmp_path_factory.mktemp("algoperf_v05_logs")
    archive_path = os.path.join(v05_shared, "logs.tar.xz")
    if shutil.which("tar") and shutil.which("xz"):  # ~4x faster than Python's lzma
        subprocess.run(["tar", "-xJf", archive_path, "-C", str(root)], check=True)
    else:
        with tarfile.open(archive_path, "r:xz") as archive:
            archive.extractall(root, filter="data")
    return str(root)
