import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny convolutions: a second torch thread only adds contention on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
