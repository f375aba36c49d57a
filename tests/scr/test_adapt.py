"""Online leaf adaptation on a hand-made tree: the leaves are refilled with the new
frames' scene coordinates, the split never changes."""
import numpy as np

from vloc.geometry import Camera, Pose
from vloc.scr import ForestConfig, LeafAdapter
from vloc.scr.forest import COLOUR, Features, Forest, RGBDFrame, Tree


def two_leaf_forest() -> Forest:
    """One split: red minus green at the pixel itself < 0 -> leaf 0 (green), else leaf 1 (red)."""
    feats = Features(np.array([COLOUR, 0, 0], np.int8), np.array([[0, 1], [0, 0], [0, 0]], np.int8),
                     np.zeros((3, 2, 2), np.float32))
    tree = Tree(feats, np.zeros(3, np.float32), np.array([[1, 2], [-1, -1], [-1, -1]], np.int32),
                np.array([-1, 0, 1], np.int32), np.full((2, 3, 3), np.nan, np.float32), np.zeros((2, 3), np.float32))
    return Forest("rgbd", [tree], 2.0)


def wall_frame(depth: float = 2.0) -> RGBDFrame:
    """A fronto-parallel wall: the left half red, the right half green."""
    colour = np.zeros((24, 32, 3), np.uint8)
    colour[:, :16, 0] = 200
    colour[:, 16:, 1] = 200
    return RGBDFrame(colour, np.full((24, 32), depth, np.float32), Camera.pinhole(20, 20, 16, 12, 32, 24))


def test_leaves_refilled_split_untouched():
    forest = two_leaf_forest()
    tree = forest.trees[0]
    split = {k: v.copy() for k, v in tree.arrays().items() if k not in ("modes", "weights")}
    cfg = ForestConfig(samples_per_frame=300, leaf_capacity=400, bandwidth=0.1, max_modes=3)
    adapter = LeafAdapter(forest, cfg)
    info = adapter.add_frame(wall_frame(), Pose.identity())
    assert info["pixels"] == 300 and info["leaves_updated"] == 2
    store = adapter.stores[0]
    for leaf, side in ((0, 1), (1, -1)):                      # green: right half (x > 0), red: left
        pts = store.points[leaf][np.isfinite(store.points[leaf, :, 0])]
        assert len(pts) == store.seen[leaf] and np.all(np.sign(pts[:, 0]) == side)
        assert np.allclose(pts[:, 2], 2.0)                     # the wall's depth, identity pose
        modes = tree.modes[leaf][np.isfinite(tree.modes[leaf, :, 0])]
        assert len(modes) >= 1 and np.all(np.sign(modes[:, 0]) == side) and np.allclose(modes[:, 2], 2.0)
        assert 0 < tree.weights[leaf].sum() <= 1
    assert store.seen.sum() == 300
    # a second frame one metre further back, the camera moved: the leaves take its coordinates too
    before = tree.modes.copy()
    adapter.add_frame(wall_frame(3.0), Pose(np.eye(3), np.array([0.0, 0.0, 1.0])))   # the same wall, z = 2 in the world
    assert store.seen.sum() == 600 and adapter.frames == 2
    assert np.allclose(store.points[..., 2][np.isfinite(store.points[..., 2])], 2.0)
    assert not np.array_equal(before, tree.modes, equal_nan=True)
    assert all(np.array_equal(tree.arrays()[k], v) for k, v in split.items())
    adapter.reset()
    assert np.isnan(tree.modes).all() and not tree.weights.any() and store.seen.sum() == 0
    assert all(np.array_equal(tree.arrays()[k], v) for k, v in split.items())
