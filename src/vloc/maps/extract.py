"""Feature extraction for many frames, with a progress bar. Images are decoded in
threads here. Extractors that run on one core and hold the GIL (COLMAP's SIFT) get
the decoded images in 2 forked worker processes; the others (OpenCV's SIFT is
multi-threaded) run here."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np

from ..datasets import Frame
from ..errors import DataError
from ..features import Features, LocalExtractor, make_extractor
from ..features.base import reads_color
from ..imageio import read_image
from ..progress import progress_bar

_WORKER_EXTRACTOR: dict = {}


def read_frame_image(frame: Frame, resize_max: int, color: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    if frame.image_path is None:
        raise DataError(f"frame {frame.name} has no image")
    img, size = read_image(frame.image_path, grayscale=not color, max_size=resize_max)
    if size != (frame.camera.width, frame.camera.height):
        raise DataError(f"image {frame.image_path} is {size[0]}x{size[1]} but its camera says "
                        f"{frame.camera.width}x{frame.camera.height}")
    return img, size


def extract_frame(extractor: LocalExtractor, frame: Frame, resize_max: int) -> Features:
    return extractor.extract(*read_frame_image(frame, resize_max, reads_color(extractor)))


def _noop(_):
    return None


def _worker(config: dict, image: np.ndarray, size: tuple[int, int]) -> Features:
    key = repr(sorted(config.items()))
    if key not in _WORKER_EXTRACTOR:
        cfg = dict(config)
        _WORKER_EXTRACTOR[key] = make_extractor(cfg.pop("name"), **cfg)
    return _WORKER_EXTRACTOR[key].extract(image, size)


def extract_frames(extractor: LocalExtractor, frames: list[Frame], resize_max: int,
                   progress: bool = True, processes: int | None = None) -> dict[str, Features]:
    if processes is None:
        single_core = getattr(extractor, "single_threaded", False)
        processes = min(2, os.cpu_count() or 1) if single_core and len(frames) >= 8 else 1
    window = 64                       # images decoded ahead: memory stays bounded on 100k-image maps
    out: dict[str, Features] = {}
    bar = progress_bar(None, "features", progress, total=len(frames))
    if processes <= 1:
        with ThreadPoolExecutor(max_workers=2) as pool:       # decoding overlaps extraction
            for start in range(0, len(frames), window):
                chunk = frames[start:start + window]
                futures = [pool.submit(extract_frame, extractor, f, resize_max) for f in chunk]
                for f, fut in zip(chunk, futures):
                    out[f.name] = fut.result()
                    bar.update(1)
        bar.close()
        return out
    # fork (not spawn: spawn re-imports the caller's __main__) before any thread starts;
    # the workers only run the extractor on arrays, no decoding library
    workers = ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("fork"))
    with workers:
        list(workers.map(_noop, range(processes)))
        config = extractor.config_dict()
        with ThreadPoolExecutor(max_workers=2) as decode:
            for start in range(0, len(frames), window):
                chunk = frames[start:start + window]
                images = [decode.submit(read_frame_image, f, resize_max, reads_color(extractor)) for f in chunk]
                futures = []
                try:
                    for img in images:
                        futures.append(workers.submit(_worker, config, *img.result()))
                    for f, fut in zip(chunk, futures):
                        out[f.name] = fut.result()
                        bar.update(1)
                except BaseException:
                    for fut in images + futures:
                        fut.cancel()
                    raise
    bar.close()
    return out


def extract_to_store(frames: list[Frame], config, store, progress: bool, chunk: int = 2000) -> dict:
    """All frames' features (MapConfig's extractor) into an HDF5 store, chunk by chunk
    (bounded memory). Returns the extractor's config (for the manifest)."""
    from ..features.store import write_features
    extractor = make_extractor(config.features, resize_max=config.resize_max,
                               max_keypoints=config.max_keypoints, **config.feature_options)
    for start in progress_bar(range(0, len(frames), chunk), "features (chunks)", progress and len(frames) > chunk):
        feats = extract_frames(extractor, frames[start:start + chunk], config.resize_max, progress)
        write_features(store, feats, mode="a")
    return extractor.config_dict()
