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


def start_cli(*args, cwd=REPO):
    """``algoperf <args>`` started in the background (a run to kill or to race)."""
    env = dict(os.environ, PYTHONPATH=REPO, **SUBPROCESS_ENV)
    return subprocess.Popen([sys.executable, "-m", "algoperf.cli", *args], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_rows(csv, rows: int, timeout: float = 240) -> None:
    """Until the eval CSV ``csv`` (a pathlib.Path) holds ``rows`` rows."""
    import time

    import pandas as pd
    deadline = time.time() + timeout
    while time.time() < deadline:
        if csv.exists() and len(pd.read_csv(csv)) >= rows:
            return
        time.sleep(0.2)
    raise AssertionError(f"{csv} never reached {rows} rows")
