import pytest


@pytest.fixture(scope="package")
def tiny_room(tmp_path_factory):
    """A small synthetic room at 128 x 96: 40 mapping and 8 query frames (seed 3)."""
    from vloc.datasets.synthetic import SyntheticConfig, generate_scene
    return generate_scene(tmp_path_factory.mktemp("tiny_room") / "scene",
                          SyntheticConfig(n_mapping=40, n_query=8, seed=3, width=128, height=96, focal=100,
                                          texture_size=256))


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """One torch thread: the machine is small and shared."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
