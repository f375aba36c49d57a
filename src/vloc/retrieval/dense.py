"""Dense ALIKED feature maps for image-based global descriptors: kornia's ALIKED
backbone (`extract_dense_map`: a (128, H, W) map of L2-normalised features) with the
packaged offline weights, on the image resized to a modest size for CPU speed, then
average-pooled over cells of `cell` x `cell` pixels and renormalised."""
from __future__ import annotations

import threading

import numpy as np

from ..errors import VlocError

MODELS = ("aliked-n16", "aliked-n16rot", "aliked-n32", "aliked-t16")
_NETS: dict = {}
_LOCK = threading.Lock()


def aliked_network(model: str = "aliked-n16", weights: str = ""):
    """kornia's ALIKED in eval mode with packaged (or given) weights; one per process."""
    if model not in MODELS:
        raise VlocError(f"unknown ALIKED model {model!r}; available: {', '.join(MODELS)}")
    key = (model, str(weights))
    with _LOCK:
        if key not in _NETS:
            import kornia.feature as KF
            from ..features.weights import load_state_dict
            net = KF.ALIKED(model_name=model)
            bad = net.load_state_dict(load_state_dict(model, weights or None), strict=False)
            if bad.unexpected_keys or set(bad.missing_keys) - {"dkd.hw_grid"}:
                raise VlocError(f"weights for {model} do not fit the network: missing {bad.missing_keys}, "
                                f"unexpected {bad.unexpected_keys}")
            _NETS[key] = net.eval()
        return _NETS[key]


def as_rgb01(image: np.ndarray):
    """(1, 3, H, W) float32 tensor in [0, 1] from a uint8 (or [0, 1] float) gray or
    RGB image."""
    import torch
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3) or min(img.shape[:2]) < 1:
        raise VlocError(f"an image must be (H, W) gray or (H, W, 3) RGB, got shape {img.shape}")
    if img.dtype == np.uint8:
        x = img.astype(np.float32) / 255
    elif np.issubdtype(img.dtype, np.floating):
        x = img.astype(np.float32)
        if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
            raise VlocError("a float image must have values in [0, 1]")
    else:
        raise VlocError(f"an image must be uint8 or float in [0, 1], got {img.dtype}")
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]


def dense_features(image: np.ndarray, model: str = "aliked-n16", image_size: int = 512, cell: int = 8,
                   weights: str = "") -> np.ndarray:
    """(h, w, D) float32 unit-L2 features of the image: the ALIKED dense map of the
    image resized to at most `image_size` on its longer side, averaged over
    `cell` x `cell` pixel cells (h = ceil(H / cell)) and renormalised.
    Deterministic for a given image and thread count."""
    import torch
    import torch.nn.functional as F
    from ..imageio import resize_max
    if image_size < 32 or cell < 1:
        raise VlocError(f"dense features need image_size >= 32 and cell >= 1, got {image_size}, {cell}")
    x = as_rgb01(resize_max(np.asarray(image), image_size))
    net = aliked_network(model, weights)
    with torch.inference_mode():
        fmap, _ = net.extract_dense_map(x)
        if cell > 1:
            fmap = F.avg_pool2d(fmap, cell, cell, ceil_mode=True)
        fmap = F.normalize(fmap, dim=1)
    return np.ascontiguousarray(fmap[0].permute(1, 2, 0).numpy(), dtype=np.float32)
