import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("VLOC_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA} (set VLOC_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def temple(shared_data):
    """Middlebury templeRing: small (640x480), exact poses; `odd-even` maps 10, queries 9."""
    import vloc
    return vloc.Scene.load(shared_data / "middlebury_temple" / "templeRing")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread: on a loaded 2-core machine two spinning OpenMP threads are
    several times slower (measured: 7 s instead of 21 s for an ALIKED map)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_opencv_thread():
    """One OpenCV thread (dense SIFT): the same contention as torch's on 2 busy cores."""
    from vloc._libs import cv2
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(before)


@pytest.fixture(scope="session")
def room(tmp_path_factory):
    """The synthetic room: 24 mapping and 6 query frames (seed 7), rendered once."""
    from vloc.datasets.synthetic import SyntheticConfig, generate_scene
    return generate_scene(tmp_path_factory.mktemp("room") / "scene",
                          SyntheticConfig(n_mapping=24, n_query=6, seed=7))
