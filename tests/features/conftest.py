import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread: on a loaded 2-core machine two spinning OpenMP threads are
    several times slower (measured: 7 s instead of 21 s for an ALIKED map)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
