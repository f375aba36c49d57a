import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):      # see tests/conftest.py
    yield


@pytest.fixture(scope="session")
def room_render():
    """A 320x240 RGB render of the synthetic room (seed 7, mapping frame 20)."""
    from vloc.datasets import synthetic as S
    cfg = S.SyntheticConfig(width=320, height=240, focal=250.0, n_mapping=24, n_query=6, seed=7)
    world = S.build_world(cfg)
    mapping, _ = S.scene_poses(cfg, world)
    rgb, _ = S.render(world, cfg.camera(), mapping[20])
    return np.ascontiguousarray(rgb)
