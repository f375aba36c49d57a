"""SuperPoint (DeTone, Malisiewicz, Rabinovich, CVPRW 2018) in plain torch, for weights
the user provides: vloc ships none (MagicLeap's `superpoint_v1.pth` is for
non-commercial research only; the MIT-licensed re-training of rpautrat/SuperPoint is
not available offline here).

The network is the standard one: a VGG-style encoder (conv1a ... conv4b, 3x3, ReLU,
three 2x2 max-pools: 1/8 resolution, 128 channels), a detector head (convPa 3x3 256,
convPb 1x1 65: one channel per pixel of an 8x8 cell plus "no keypoint") and a
descriptor head (convDa 3x3 256, convDb 1x1 256). Two key layouts load into it:

- MagicLeap's `superpoint_v1.pth` (`conv1a.weight`, ..., `convDb.bias`); the LightGlue
  repository's `SuperPoint` uses these names too (its release file is the same one);
- rpautrat/SuperPoint's `superpoint_pytorch.py` (also glue-factory's): `backbone.I.J.conv.*`,
  `detector.K.*`, `descriptor.K.*`, with a BatchNorm after each ReLU (and after the
  last 1x1 convolutions).

Prefixes such as `module.`, `extractor.`, `superpoint.` or `net.` (a whole model saved)
are removed. Anything else is a `VlocError` naming the file and the missing or
unexpected keys.

Detection: softmax over the 65 channels, the cells unfolded to a full-resolution score
map, non-maximum suppression (a keypoint is the maximum of its (2r+1)^2 window, two
rounds of suppression as in the original), no keypoint within `remove_borders` pixels
of the edge, scores above `detection_threshold`, the `max_keypoints` strongest.
Descriptors: the dense 1/8 map, L2-normalised, sampled bilinearly at the keypoints
(cell i covers pixels 8i .. 8i+7, its centre is pixel 8i + 3.5), renormalised.

Memory: images larger than `tile_size` on a side run the network in tiles of
`tile_size` pixels with a 64-pixel halo (the network sees 45 pixels around a cell), so
the full-resolution activations (64 channels) are bounded by a tile; the coarse
outputs are stitched before detection, which gives the same keypoints as one pass.
`extract_batch` runs images of equal size through the network together.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import VlocError
from .base import Features
from .sift import empty_features

# torch is imported on first use: `import vloc` stays light

HALO = 64                 # pixels of context around a tile (> the 45-pixel receptive radius)
CELL = 8

_STEM = ("conv1a", "conv1b", "conv2a", "conv2b", "conv3a", "conv3b", "conv4a", "conv4b")
_HEADS = ("convPa", "convPb", "convDa", "convDb")
_PREFIXES = ("module.", "extractor.", "superpoint.", "net.", "model.")


@dataclass(frozen=True)
class SuperPointConfig:
    weights: str = ""                   # required: a SuperPoint state dict (.pth), see the module doc
    max_keypoints: int = 4096           # strongest kept; 0 = no limit
    resize_max: int = 1600              # longer image side for extraction
    detection_threshold: float = 0.005  # on the softmax score
    nms_radius: int = 4                 # keypoints are maxima of a (2r+1)^2 window
    remove_borders: int = 4             # pixels at the edge without keypoints
    tile_size: int = 1024               # larger images run in tiles (bounded memory); 0 = never
    batch_size: int = 4                 # images per forward pass in extract_batch


def _build_network(batchnorm: bool):
    import torch
    from torch import nn

    class SuperPointNet(nn.Module):
        """The SuperPoint network; `batchnorm`: rpautrat's variant (BN after each ReLU)."""

        def __init__(self):
            super().__init__()
            chans = {"conv1a": (1, 64), "conv1b": (64, 64), "conv2a": (64, 64), "conv2b": (64, 64),
                     "conv3a": (64, 128), "conv3b": (128, 128), "conv4a": (128, 128), "conv4b": (128, 128),
                     "convPa": (128, 256), "convPb": (256, 65), "convDa": (128, 256), "convDb": (256, 256)}
            for name, (cin, cout) in chans.items():
                k = 1 if name in ("convPb", "convDb") else 3
                setattr(self, name, nn.Conv2d(cin, cout, k, 1, k // 2))
                if batchnorm:
                    setattr(self, "bn" + name[4:], nn.BatchNorm2d(cout, eps=0.001))
            self.batchnorm = batchnorm

        def _layer(self, name: str, x, relu: bool = True):
            x = getattr(self, name)(x)
            if relu:
                x = torch.relu_(x)
            return getattr(self, "bn" + name[4:])(x) if self.batchnorm else x

        def forward(self, x):
            """(B, 1, H, W) in [0, 1], H and W multiples of 8 -> (logits (B, 65, H/8, W/8),
            raw descriptors (B, 256, H/8, W/8))."""
            for i, name in enumerate(_STEM):
                x = self._layer(name, x)
                if i in (1, 3, 5):
                    x = torch.nn.functional.max_pool2d(x, 2, 2)
            logits = self._layer("convPb", self._layer("convPa", x), relu=False)
            desc = self._layer("convDb", self._layer("convDa", x), relu=False)
            return logits, desc

    return SuperPointNet()


def _strip_prefixes(sd: dict) -> dict:
    changed = True
    while changed and sd:
        changed = False
        for p in _PREFIXES:
            if all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                changed = True
    return sd


def normalize_state_dict(sd: dict) -> tuple[dict, bool]:
    """(state dict in this module's names, whether it has BatchNorm layers). Accepts
    MagicLeap / LightGlue names (unchanged) and rpautrat's `backbone/detector/descriptor`
    names; other keys are kept as they are (and reported as unexpected on loading)."""
    sd = _strip_prefixes(dict(sd))
    if not any(k.startswith(("backbone.", "detector.", "descriptor.")) for k in sd):
        return sd, any(k.startswith("bn") for k in sd)
    out = {}
    for k, v in sd.items():
        m = re.fullmatch(r"backbone\.(\d)\.(\d)\.(conv|bn)\.(.+)", k)
        if m and int(m[1]) < 4 and int(m[2]) < 2:
            out[f"{m[3]}{int(m[1]) + 1}{'ab'[int(m[2])]}.{m[4]}"] = v
            continue
        m = re.fullmatch(r"(detector|descriptor)\.([01])\.(conv|bn)\.(.+)", k)
        if m:
            out[f"{m[3]}{'P' if m[1] == 'detector' else 'D'}{'ab'[int(m[2])]}.{m[4]}"] = v
            continue
        out[k] = v
    return out, True


_NETWORKS: dict = {}


def load_superpoint(path) -> object:
    """The network with the weights at `path` (cached per process by path and file
    modification time); a VlocError when the file is missing, unreadable, or not a
    SuperPoint state dict."""
    if not path:
        raise VlocError("features 'superpoint' need a weights file (vloc ships none): pass weights=PATH, "
                        "e.g. MapConfig(features='superpoint', feature_options={'weights': PATH}); "
                        "accepted: MagicLeap's superpoint_v1.pth layout (also LightGlue's) or "
                        "rpautrat/SuperPoint's superpoint_pytorch.py layout")
    from .torch_models import _BUILD_LOCK, load_checked
    from .weights import load_state_dict
    p = Path(path)
    if not p.is_file():
        raise VlocError(f"SuperPoint weights not found: {p}")
    key = (str(p.resolve()), p.stat().st_mtime_ns)
    with _BUILD_LOCK:
        if key not in _NETWORKS:
            sd, batchnorm = normalize_state_dict(load_state_dict("superpoint", p))
            net = _build_network(batchnorm)
            load_checked(net, sd, str(p))
            _NETWORKS[key] = net.eval()
        return _NETWORKS[key]


class SuperPoint:
    """SuperPoint behind vloc's extractor interface (see the module doc)."""

    dim = 256

    def __init__(self, config: SuperPointConfig = SuperPointConfig()):
        c = config
        if c.nms_radius < 0 or c.remove_borders < 0 or c.max_keypoints < 0:
            raise VlocError("superpoint: nms_radius, remove_borders and max_keypoints must be >= 0")
        if c.tile_size and c.tile_size < 64:
            raise VlocError(f"superpoint: tile_size must be 0 or >= 64, got {c.tile_size}")
        if c.batch_size < 1:
            raise VlocError(f"superpoint: batch_size must be >= 1, got {c.batch_size}")
        self.config, self.name = config, "superpoint"
        self._net = load_superpoint(config.weights)

    def config_dict(self) -> dict:
        return {"name": self.name, **asdict(self.config)}

    # ------------------------------------------------------------------ network
    def _dense(self, x):
        """(B, 1, H, W), H, W multiples of 8 -> (logits, descriptors) at 1/8, whole or tiled."""
        B, _, H, W = x.shape
        T = (self.config.tile_size // CELL) * CELL
        if not T or (H <= T and W <= T):
            return self._net(x)
        h, w = H // CELL, W // CELL
        logits = x.new_empty((B, 65, h, w))
        desc = x.new_empty((B, 256, h, w))
        for y0 in range(0, H, T):
            for x0 in range(0, W, T):
                y1, x1 = min(y0 + T, H), min(x0 + T, W)
                ya, xa = max(y0 - HALO, 0), max(x0 - HALO, 0)
                yb, xb = min(y1 + HALO, H), min(x1 + HALO, W)
                lo, de = self._net(x[:, :, ya:yb, xa:xb])
                cy, cx = (y0 - ya) // CELL, (x0 - xa) // CELL
                ny, nx = (y1 - y0) // CELL, (x1 - x0) // CELL
                logits[:, :, y0 // CELL:y1 // CELL, x0 // CELL:x1 // CELL] = lo[:, :, cy:cy + ny, cx:cx + nx]
                desc[:, :, y0 // CELL:y1 // CELL, x0 // CELL:x1 // CELL] = de[:, :, cy:cy + ny, cx:cx + nx]
                del lo, de
        return logits, desc

    def _scores(self, logits, H: int, W: int):
        """Full-resolution scores (B, H8, W8) after NMS and border removal."""
        import torch
        import torch.nn.functional as F
        B, _, h, w = logits.shape
        s = torch.softmax(logits, 1)[:, :-1]
        s = s.permute(0, 2, 3, 1).reshape(B, h, w, CELL, CELL).permute(0, 1, 3, 2, 4).reshape(B, h * CELL, w * CELL)
        r = self.config.nms_radius
        if r > 0:
            def pool(t):
                return F.max_pool2d(t, 2 * r + 1, 1, r)
            zeros = torch.zeros_like(s)
            is_max = s == pool(s)
            for _ in range(2):
                supp = pool(is_max.float()) > 0
                supp_s = torch.where(supp, zeros, s)
                is_max = is_max | ((supp_s == pool(supp_s)) & ~supp)
            s = torch.where(is_max, s, zeros)
        b = self.config.remove_borders
        valid = torch.zeros_like(s, dtype=torch.bool)
        valid[:, b:H - b, b:W - b] = True            # also drops the padding beyond H, W
        return torch.where(valid, s, torch.full_like(s, -1.0))

    def _features(self, scores, desc, hw: tuple[int, int], original_size) -> Features:
        """Keypoints and descriptors of one image from its score map (H8, W8) and raw
        descriptor map (256, h, w)."""
        import torch
        import torch.nn.functional as F
        from .torch_models import to_original
        c = self.config
        ij = torch.nonzero(scores > c.detection_threshold)
        sc = scores[ij[:, 0], ij[:, 1]]
        if c.max_keypoints and len(sc) > c.max_keypoints:
            sc, keep = torch.topk(sc, c.max_keypoints)
            ij = ij[keep]
        if len(sc) == 0:
            return empty_features(original_size, self.dim)
        xy = ij.flip(1).to(desc.dtype)                 # pixel indices (x, y), centres at integers
        _, h, w = desc.shape
        grid = (xy + 0.5) / xy.new_tensor([w * CELL, h * CELL]) * 2 - 1
        d = F.grid_sample(desc[None], grid[None, None], mode="bilinear", align_corners=False,
                          padding_mode="border")[0, :, 0].t()
        d = F.normalize(d, dim=1)
        xy, d, sc = xy.numpy(), d.float().numpy(), sc.float().numpy()
        order = np.lexsort((xy[:, 0], xy[:, 1], -sc))            # strongest first, ties by position
        H, W = hw
        kp = to_original(xy[order], (H, W), original_size)
        scale = (original_size[0] / W + original_size[1] / H) / 2
        return Features(kp, np.ascontiguousarray(d[order], np.float32), sc[order],
                        np.full(len(kp), scale, np.float32), tuple(original_size))

    def _run(self, images: list[np.ndarray], sizes) -> list[Features]:
        """Images of one size through the network together."""
        import torch
        import torch.nn.functional as F
        from .torch_models import INFERENCE_LOCK, gray_tensor
        x = torch.cat([gray_tensor(im) for im in images])
        H, W = x.shape[-2:]
        ph, pw = -H % CELL, -W % CELL
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        with INFERENCE_LOCK, torch.inference_mode():
            logits, desc = self._dense(x)
            desc = F.normalize(desc, dim=1)
            scores = self._scores(logits, H, W)
            return [self._features(scores[i], desc[i], (H, W), sizes[i]) for i in range(len(images))]

    # ------------------------------------------------------------------ interface
    def extract(self, image: np.ndarray, original_size: tuple[int, int]) -> Features:
        """`image`: uint8 gray or RGB (converted to gray), possibly downscaled from
        `original_size` (w, h)."""
        return self._run([image], [tuple(original_size)])[0]

    def extract_batch(self, images, original_sizes) -> list[Features]:
        """Several images: those of equal size go through the network `batch_size` at a
        time (images that need tiles one by one). Same results as `extract` per image."""
        images, sizes = list(images), [tuple(s) for s in original_sizes]
        if len(images) != len(sizes):
            raise VlocError(f"{len(images)} images but {len(sizes)} original sizes")
        out: list[Features | None] = [None] * len(images)
        T = self.config.tile_size
        groups: dict[tuple, list[int]] = {}
        for i, im in enumerate(images):
            h, w = im.shape[:2]
            key = (h, w, i) if T and (h > T or w > T) else (h, w)
            groups.setdefault(key, []).append(i)
        for idx in groups.values():
            for s in range(0, len(idx), self.config.batch_size):
                chunk = idx[s:s + self.config.batch_size]
                for i, f in zip(chunk, self._run([images[i] for i in chunk], [sizes[i] for i in chunk])):
                    out[i] = f
        return out


def make(**overrides) -> SuperPoint:
    """The registry's factory (`make_extractor("superpoint", weights=PATH, ...)`)."""
    return SuperPoint(SuperPointConfig(**overrides))
