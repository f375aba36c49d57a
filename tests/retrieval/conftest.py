import pytest


@pytest.fixture(scope="session")
def synthetic_room(tmp_path_factory):
    """A small synthetic room (16 mapping, 6 query frames, 640x480) shared by the
    retrieval tests: (scene, mapping names, query names)."""
    from vloc.datasets.synthetic import SyntheticConfig, generate_scene
    scene = generate_scene(tmp_path_factory.mktemp("retrieval") / "scene",
                           SyntheticConfig(n_mapping=16, n_query=6, seed=5), progress=False)
    mapping, query = scene.official_splits["official"]
    return scene, mapping, query
