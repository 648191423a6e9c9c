import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures")


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """One generated-data folder shared by the tests of a session (generated on first use)."""
    return str(tmp_path_factory.mktemp("algoperf_data"))


def run_cli(*args, timeout=600, env=None):
    """``algoperf <args>`` in a fresh process: what a user types, exit code and output."""
    full_env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    return subprocess.run([sys.executable, "-m", "algoperf.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=REPO)
