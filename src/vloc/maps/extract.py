"""Feature extraction for many frames, with a progress bar. Extractors that run on
one core (COLMAP's SIFT holds the GIL) are spread over worker processes; the others
(OpenCV's SIFT is multi-threaded) run here, with image decoding in a second thread."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from ..datasets import Frame
from ..errors import DataError
from ..features import Features, LocalExtractor, make_extractor
from ..imageio import read_image
from ..progress import progress_bar

_WORKER_EXTRACTOR: dict = {}


def extract_frame(extractor: LocalExtractor, frame: Frame, resize_max: int) -> Features:
    if frame.image_path is None:
        raise DataError(f"frame {frame.name} has no image")
    img, size = read_image(frame.image_path, grayscale=True, max_size=resize_max)
    if size != (frame.camera.width, frame.camera.height):
        raise DataError(f"image {frame.image_path} is {size[0]}x{size[1]} but its camera says "
                        f"{frame.camera.width}x{frame.camera.height}")
    return extractor.extract(img, size)


def _worker(config: dict, frame: Frame, resize_max: int) -> Features:
    key = repr(sorted(config.items()))
    if key not in _WORKER_EXTRACTOR:
        cfg = dict(config)
        _WORKER_EXTRACTOR[key] = make_extractor(cfg.pop("name"), **cfg)
    return extract_frame(_WORKER_EXTRACTOR[key], frame, resize_max)


def extract_frames(extractor: LocalExtractor, frames: list[Frame], resize_max: int,
                   progress: bool = True, processes: int | None = None) -> dict[str, Features]:
    if processes is None:
        single_core = getattr(extractor, "single_threaded", False)
        processes = min(2, os.cpu_count() or 1) if single_core and len(frames) >= 8 else 1
    if processes > 1:
        ctx = multiprocessing.get_context("spawn")     # no fork: the parent holds thread pools
        pool = ProcessPoolExecutor(max_workers=processes, mp_context=ctx)
        submit = lambda f: pool.submit(_worker, extractor.config_dict(), f, resize_max)  # noqa: E731
    else:
        pool = ThreadPoolExecutor(max_workers=2)       # decoding overlaps extraction
        submit = lambda f: pool.submit(extract_frame, extractor, f, resize_max)  # noqa: E731
    with pool:
        futures = [submit(f) for f in frames]
        try:
            return {f.name: fut.result() for f, fut in
                    progress_bar(zip(frames, futures), "features", progress, total=len(frames))}
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
