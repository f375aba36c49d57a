"""Image reading: pixels as stored, whatever the EXIF orientation tag says."""
import numpy as np
import pytest

from vloc.imageio import image_size, read_image


@pytest.fixture()
def rotated_copy(temple, tmp_path):
    """A temple photograph saved with EXIF orientation 6 ("rotate 90° to view"), as
    phones save portrait photos; its stored pixels are the original's."""
    from PIL import Image
    src = temple.frames[0].image_path
    with Image.open(src) as im:
        exif = im.getexif()
        exif[0x0112] = 6
        im.save(tmp_path / "rotated.jpg", quality=95, exif=exif)
        im.save(tmp_path / "plain.jpg", quality=95)
    return tmp_path / "rotated.jpg", tmp_path / "plain.jpg"


@pytest.mark.parametrize("max_size", [None, 640, 320, 200])
@pytest.mark.parametrize("grayscale", [False, True])
def test_exif_orientation_is_ignored(rotated_copy, max_size, grayscale):
    rotated, plain = rotated_copy
    assert image_size(rotated) == (640, 480)
    img, size = read_image(rotated, grayscale, max_size)
    ref, ref_size = read_image(plain, grayscale, max_size)
    assert size == ref_size == (640, 480)
    assert img.shape == ref.shape and img.shape[1] >= img.shape[0]     # landscape, as stored
    assert np.abs(img.astype(int) - ref.astype(int)).max() <= 1
