"""What the learned extractors and matchers share: networks built once per process
(cached by kind, variant and weight file), weights checked against the architecture,
one forward pass at a time, and images turned into tensors."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

# Idle OpenMP threads sleep instead of spinning, unless the user chose otherwise. Read
# when torch loads its libgomp: set before the first `import torch`. On the shared
# 2-core machine (load 6), ALIKED-n16 at 640x480 took 2.5-4.0 s with spinning threads
# (ACTIVE or unset) and 1.4-1.6 s with sleeping ones, at half the CPU time.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from .._libs import cv2  # noqa: E402
from ..errors import VlocError  # noqa: E402
from .weights import load_state_dict, weight_path  # noqa: E402

_MODELS: dict[tuple, torch.nn.Module] = {}
_BUILD_LOCK = threading.Lock()
# torch already uses every core in one forward pass; callers in threads (map extraction
# decodes in 2 threads) take turns, which also bounds memory to one image's activations.
# No batching: on the CPU it did not pay (ALIKED-n16, 640x480: 1.0 s of CPU per image
# alone, 1.2-1.8 s per image in batches of 2-4) and it multiplies the memory.
INFERENCE_LOCK = threading.Lock()


def cached_model(key: tuple, weights: str, override: str | Path | None,
                 build: Callable[[], torch.nn.Module], target: Callable[[torch.nn.Module], torch.nn.Module] = None,
                 transform: Callable[[dict], dict] = None, allowed_missing: tuple[str, ...] = ()) -> torch.nn.Module:
    """The network for `key`, built by `build()` and loaded with the state dict of
    packaged weights `weights` (or the file `override`) on first use; in eval mode.
    `target(model)` is the submodule the state dict is for, `transform(sd)` adapts its
    keys, and `allowed_missing` are buffers that the network makes itself."""
    path = str(weight_path(weights, override))
    full_key = (*key, path)
    with _BUILD_LOCK:
        if full_key not in _MODELS:
            sd = load_state_dict(weights, override)
            if transform is not None:
                sd = transform(sd)
            model = build()
            load_checked(target(model) if target else model, sd, path, allowed_missing)
            _MODELS[full_key] = model.eval()
        return _MODELS[full_key]


def load_checked(module: torch.nn.Module, sd: dict, path: str, allowed_missing=()) -> None:
    """load_state_dict, with a VlocError naming the file when it is for another architecture."""
    try:
        res = module.load_state_dict(sd, strict=False)
    except (RuntimeError, TypeError, AttributeError) as e:      # e.g. same names, other shapes
        first = str(e).split("\n\t")[1] if "\n\t" in str(e) else str(e)
        raise VlocError(f"weights {path} do not fit {type(module).__name__}: {first.strip()}") from None
    missing = [k for k in res.missing_keys if k not in allowed_missing]
    if missing or res.unexpected_keys:
        raise VlocError(f"weights {path} do not fit {type(module).__name__} (another architecture?): "
                        f"{len(missing)} missing keys {_few(missing)}, "
                        f"{len(res.unexpected_keys)} unexpected {_few(res.unexpected_keys)}")


def _few(keys, n: int = 3) -> str:
    return "[" + ", ".join(keys[:n]) + (", ...]" if len(keys) > n else "]")


def gray_tensor(image: np.ndarray) -> torch.Tensor:
    """(1, 1, H, W) float in [0, 1]. Extractors without colour input read map and query
    images in grey, so an RGB array is converted too: map and query features then come
    from the same input."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if image.dtype != np.uint8:
        raise VlocError(f"expected a uint8 image, got {image.dtype}")
    return torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0)[None, None]


def image_tensor(image: np.ndarray, color: bool) -> torch.Tensor:
    """(1, 3, H, W) from an RGB image when `color`, else `gray_tensor`; a grey image
    stays (1, 1, H, W) (the networks broadcast it to three channels)."""
    if not color or image.ndim == 2:
        return gray_tensor(image)
    if image.dtype != np.uint8:
        raise VlocError(f"expected a uint8 image, got {image.dtype}")
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)[None]


def to_original(xy_index: np.ndarray, image_hw: tuple[int, int], original_size) -> np.ndarray:
    """Keypoints with pixel centres at integers (torch/kornia) in an image of `image_hw`
    -> vloc's convention (origin at the top-left corner) at the original resolution."""
    sx = original_size[0] / image_hw[1]
    sy = original_size[1] / image_hw[0]
    return ((xy_index + 0.5) * np.array([sx, sy], np.float32)).astype(np.float32)
