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
