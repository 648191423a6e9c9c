import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These tensors are tiny: a second intra-op thread only adds contention (on a busy
    2-core machine it made each step ~50x slower). Restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
