"""Two gloo processes under torchrun and one process, same global batches: Shampoo ends at
the same parameters (every process builds the same factors and roots from the all-reduced
gradients)."""
import os

import pytest
import torch

from tests.conftest import REPO, run_python

WORKER = os.path.join(REPO, "tests", "shampoo", "shampoo_ddp_worker.py")


def _run(out, nproc):
    run_python(WORKER, str(out), nproc=nproc, timeout=300)
    return torch.load(out)


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    one = _run(tmp_path / "one.pt", 1)
    two = _run(tmp_path / "two.pt", 2)
    assert one.keys() == two.keys()
    for name in one:
        # float64 (see the worker): agreement to round-off over 12 steps and 4 refreshes.
        torch.testing.assert_close(two[name], one[name], rtol=1e-9, atol=1e-10)
    # Negative check: the parameters moved (a no-op optimizer would also "agree").
    torch.manual_seed(0)
    init = torch.nn.Sequential(torch.nn.Linear(8, 12), torch.nn.Tanh(),
                               torch.nn.Linear(12, 4)).double()
    assert (init.state_dict()["0.weight"] - one["0.weight"]).abs().max() > 1e-2
