"""Feature extraction for many frames, with a progress bar."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ..progress import progress_bar

from ..datasets import Frame
from ..errors import DataError
from ..features import Features, LocalExtractor
from ..imageio import read_image


def extract_frame(extractor: LocalExtractor, frame: Frame, resize_max: int) -> Features:
    if frame.image_path is None:
        raise DataError(f"frame {frame.name} has no image")
    img, size = read_image(frame.image_path, grayscale=True, max_size=resize_max)
    if size != (frame.camera.width, frame.camera.height):
        raise DataError(f"image {frame.image_path} is {size[0]}x{size[1]} but its camera says "
                        f"{frame.camera.width}x{frame.camera.height}")
    return extractor.extract(img, size)


def extract_frames(extractor: LocalExtractor, frames: list[Frame], resize_max: int,
                   progress: bool = True) -> dict[str, Features]:
    """Decoding in a second thread overlaps with extraction (both release the GIL)."""
    out = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(extract_frame, extractor, f, resize_max) for f in frames]
        for f, fut in progress_bar(zip(frames, futures), "features", progress, total=len(frames)):
            out[f.name] = fut.result()
    return out
