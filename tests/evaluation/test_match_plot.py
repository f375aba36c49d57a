"""Match pictures: size, colours of inlier and outlier lines, title bar, errors."""
import numpy as np
import pytest

from vloc._libs import cv2
from vloc.errors import DataError
from vloc.evaluation.match_plot import GAP, TITLE_HEIGHT, draw_matches, save_match_plot


def _images():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (120, 160), dtype=np.uint8)             # gray
    b = rng.integers(0, 256, (100, 140, 3), dtype=np.uint8)          # RGB, smaller
    return a, b


def test_png_size_and_line_colours(tmp_path):
    a, b = _images()
    # vloc pixels: (x + 0.5, y + 0.5) is the centre of pixel (x, y)
    xy0 = np.array([[10.5, 20.5], [30.5, 90.5]])
    xy1 = np.array([[120.5, 20.5], [5.5, 60.5]])
    path = save_match_plot(tmp_path / "sub" / "m.png", a, b, xy0, xy1, [True, False])
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert img.shape == (120, 160 + GAP + 140, 3)
    off = 160 + GAP
    # the inlier is the horizontal line along row 20, from x = 10 to x = off + 120
    row = img[20, 20:off + 110]
    assert np.all(row == (0, 255, 0))
    # the outlier: a red pixel in the middle of its line, from (30, 90) to (off + 5, 60)
    t = 0.5
    x, y = round(30 + t * (off + 5 - 30)), round(90 + t * (60 - 90))
    # (the images are dimmed to 80 %: no background pixel is pure red or green)
    assert (img[y - 1:y + 2, x - 1:x + 2] == (255, 0, 0)).all(-1).sum() >= 2
    # the padding below the smaller image stays black away from the lines
    assert np.all(img[110:, off + 100:] == 0)


def test_title_subset_and_errors(tmp_path):
    a, b = _images()
    rng = np.random.default_rng(1)
    xy0, xy1 = rng.uniform(5, 95, (50, 2)), rng.uniform(5, 95, (50, 2))
    inl = np.arange(50) % 5 != 0
    img = draw_matches(a, b, xy0, xy1, inl, title="night: 40 / 50 inliers", max_lines=10)
    assert img.shape == (TITLE_HEIGHT + 120, 160 + GAP + 140, 3)
    assert img[:TITLE_HEIGHT].max() == 255            # white title text
    # with max_lines the same seed gives the same picture
    again = draw_matches(a, b, xy0, xy1, inl, title="night: 40 / 50 inliers", max_lines=10)
    assert np.array_equal(img, again)
    with pytest.raises(DataError, match="3 points in image 0 but 2"):
        draw_matches(a, b, np.zeros((3, 2)), np.zeros((2, 2)))
    with pytest.raises(DataError, match="1 inlier flags for 2 matches"):
        draw_matches(a, b, np.zeros((2, 2)), np.zeros((2, 2)), [True])
    with pytest.raises(DataError, match="uint8"):
        draw_matches(a.astype(np.float32), b, xy0, xy1)
