import os
import socket
import subprocess
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures")


# pytest -n 2 runs two test processes on two cores: a second intra-op thread per process
# only adds contention (tiny tensors; on a busy machine steps became ~50x slower).
torch.set_num_threads(1)
SUBPROCESS_ENV = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """One generated-data folder shared by the tests of a session (generated on first use)."""
    return str(tmp_path_factory.mktemp("algoperf_data"))


def run_python(*args, nproc=1, timeout=600):
    """``python <args>`` in a fresh process, under ``torchrun --nproc_per_node=nproc`` (gloo on
    CPU, a free local port) when nproc > 1; fails the test with stderr on a non-zero exit."""
    if nproc > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        args = ("-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                f"--master_port={port}", *args)
    env = dict(os.environ, PYTHONPATH=REPO, **SUBPROCESS_ENV)
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                         env=env, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def run_cli(*args, timeout=600, env=None, cwd=REPO):
    """``algoperf <args>`` in a fresh process: what a user types, exit code and output."""
    full_env = dict(os.environ, PYTHONPATH=REPO, **SUBPROCESS_ENV, **(env or {}))
    return subprocess.run([sys.executable, "-m", "algoperf.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=cwd)
