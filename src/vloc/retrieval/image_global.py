"""Global descriptors computed from the IMAGE (not from local descriptors): ALIKED
dense feature maps (`dense.py`) pooled by GeM (`aliked-gem`) or by NetVLAD-style
soft-assignment VLAD with centroids from k-means on the map's own dense features
(`aliked-netvlad`), optionally PCA-whitened on the map and passed through a small
head trained on the map with pose-based positives (`head.py`).

    enc = make_global("aliked-netvlad").fit(images, poses)   # images: uint8 gray/RGB arrays
    v = enc.encode_image(img)                                # (dim,) unit float32

`dense()` + `fit_dense()` + `encode_dense()` are the same steps split so that a map
builder runs the network once per image. Saved like the other encoders: one HDF5 file
(format tag, name, config, arrays) plus, with a head, `<file>.head.pt` (a torch state
dict of tensors, read with weights_only=True)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from ..errors import MapError, VlocError
from .dense import MODELS, dense_features
from .global_descriptors import write_encoder_file
from .head import HeadConfig, apply_head, load_head, pose_positives, save_head, train_head
from .pooling import Whitening, assignment_sharpness, gem, netvlad, normalize_netvlad, unit
from .vocabulary import train_vocabulary

POOLINGS = ("gem", "netvlad")


@dataclass(frozen=True)
class DenseGlobalConfig:
    pooling: str = "gem"           # gem | netvlad
    model: str = "aliked-n16"
    image_size: int = 512          # longer side of the image given to the network
    cell: int = 8                  # dense map averaged over cell x cell pixels
    rotate180: bool = False        # also pool the image turned by 180 deg (2x the network time)
    p: float = 3.0                 # GeM exponent
    k: int = 16                    # NetVLAD words (vector: k * 128 dims)
    max_train: int = 100_000       # features used for the NetVLAD k-means
    niter: int = 20
    whiten: int = 0                # PCA-whitening to this many dims, learned on the map (0: off)
    head: bool = False             # train a projection head on the map (needs poses)
    head_epochs: int = 30
    seed: int = 0

    def __post_init__(self):
        set_ = object.__setattr__
        try:
            for f in ("image_size", "cell", "k", "max_train", "niter", "whiten", "head_epochs", "seed"):
                v = getattr(self, f)
                if isinstance(v, bool) or float(v) != int(v):
                    raise ValueError(f"{f} must be an integer, got {v!r}")
                set_(self, f, int(v))
            set_(self, "p", float(self.p))
        except (TypeError, ValueError) as e:
            raise VlocError(f"bad dense global descriptor option: {e}") from None
        for f in ("head", "rotate180"):
            if not isinstance(getattr(self, f), (bool, np.bool_)):
                raise VlocError(f"dense global descriptor option {f} must be true or false, got {getattr(self, f)!r}")
            set_(self, f, bool(getattr(self, f)))
        if self.pooling not in POOLINGS:
            raise VlocError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.model not in MODELS:
            raise VlocError(f"unknown ALIKED model {self.model!r}; available: {', '.join(MODELS)}")
        if self.image_size < 32 or self.cell < 1 or self.k < 2 or self.max_train < 1 or self.niter < 1:
            raise VlocError("dense global descriptor: need image_size >= 32, cell >= 1, k >= 2, "
                            f"max_train >= 1, niter >= 1 (got {self})")
        if not 1 <= self.p <= 20 or self.whiten < 0 or self.head_epochs < 0 or self.seed < 0:
            raise VlocError(f"dense global descriptor: need 1 <= p <= 20, whiten >= 0, head_epochs >= 0, "
                            f"seed >= 0 (got p={self.p}, whiten={self.whiten})")

    def to_dict(self) -> dict:
        return asdict(self)


class ImageEncoder:
    """What every image-level encoder does from images, given its `dense` (image ->
    dense features), `fit_dense`, `encode_dense`, `_require_fit`, `name` and `dim`;
    `kind` names it in errors."""
    kind: ClassVar[str]

    @classmethod
    def load(cls, path):
        """Read an encoder written by `save`; MapError if it is missing, corrupt or of
        another kind than `cls`."""
        from .global_descriptors import load_global
        enc = load_global(path)
        if not isinstance(enc, cls):
            raise MapError(f"{path} holds a {enc.name!r} global descriptor, not {cls.kind}")
        return enc

    def fit(self, images: Sequence[np.ndarray], poses=None):
        """`fit_dense` on the images' dense features (uint8 gray or RGB arrays)."""
        if isinstance(images, np.ndarray) or len(images) == 0:
            raise VlocError(f"{self.name}.fit needs a non-empty list of images")
        return self.fit_dense([self.dense(im) for im in images], poses)

    def encode_image(self, image: np.ndarray) -> np.ndarray:
        """(dim,) unit float32 vector of a uint8 gray or RGB image."""
        self._require_fit()
        return self.encode_dense(self.dense(image))

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self._require_fit()
        out = np.zeros((len(images), self.dim), np.float32)
        for i, im in enumerate(images):
            out[i] = self.encode_image(im)
        return out


class DenseGlobal(ImageEncoder):
    kind: ClassVar[str] = "an ALIKED one"
    """`aliked-gem` / `aliked-netvlad` (see the module doc). Vectors are unit-L2 float32."""

    input: ClassVar[str] = "image"       # what encode takes (the local-descriptor encoders: "local")
    views: ClassVar[int] = 8             # pooled crops per mapping image for head training (the first: whole)

    def __init__(self, config: DenseGlobalConfig | None = None):
        self.config = DenseGlobalConfig() if config is None else config
        if not isinstance(self.config, DenseGlobalConfig):
            raise VlocError(f"a dense global descriptor needs a DenseGlobalConfig, got {type(self.config).__name__}")
        self.centroids: np.ndarray | None = None      # (k, D) NetVLAD words
        self.alpha: float = 0.0                       # NetVLAD assignment sharpness
        self.whitening: Whitening | None = None
        self.head = None
        self.head_training = None                     # HeadTraining of the last fit, if any

    @property
    def name(self) -> str:
        return f"aliked-{self.config.pooling}"

    @property
    def fitted(self) -> bool:
        c = self.config
        return ((c.pooling == "gem" or self.centroids is not None) and (not c.whiten or self.whitening is not None)
                and (not c.head or self.head is not None))

    def _require_fit(self) -> None:
        if not self.fitted:
            raise VlocError(f"global descriptor {self.name!r} is not fitted: call fit() or load() first")

    @property
    def pooled_dim(self) -> int:
        """Dimensions after pooling (before whitening): 2 x 128 (GeM), k x 128 (NetVLAD)."""
        d = 64 if self.config.model == "aliked-t16" else 128
        return 2 * d if self.config.pooling == "gem" else self.config.k * d

    @property
    def dim(self) -> int:
        if self.config.whiten and self.whitening is None:
            self._require_fit()
        return self.whitening.dim if self.whitening is not None else self.pooled_dim

    # steps ---------------------------------------------------------------
    def dense(self, image: np.ndarray) -> np.ndarray:
        """(h, w, D) float32 dense ALIKED features of a uint8 gray or RGB image; with
        `rotate180`, (2h, w, D): those of the image turned by 180 degrees below, so
        that the pooled vector hardly changes when the camera is upside down (the
        dense map is not rotation invariant)."""
        c = self.config
        grid = dense_features(image, c.model, c.image_size, c.cell)
        if c.rotate180:
            turned = np.ascontiguousarray(np.asarray(image)[::-1, ::-1])
            grid = np.concatenate([grid, dense_features(turned, c.model, c.image_size, c.cell)])
        return grid

    def _check_grid(self, grid) -> np.ndarray:
        g = np.asarray(grid, np.float32)
        d = self.pooled_dim // (2 if self.config.pooling == "gem" else self.config.k)
        if g.ndim != 3 or g.shape[2] != d or g.shape[0] < 1 or g.shape[1] < 1:
            raise VlocError(f"{self.name}: a dense map must be (h, w, {d}), got shape {g.shape}")
        return g

    def pool(self, grid: np.ndarray) -> np.ndarray:
        """(pooled_dim,) unit vector of a dense map, before whitening and head."""
        x = self._check_grid(grid)
        x = x.reshape(-1, x.shape[2])
        if self.config.pooling == "gem":
            return unit(gem(x, self.config.p))
        if self.centroids is None:
            raise VlocError(f"global descriptor {self.name!r} is not fitted: call fit() or load() first")
        return normalize_netvlad(netvlad(x, self.centroids, self.alpha))

    def _post(self, pooled: np.ndarray) -> np.ndarray:
        v = np.atleast_2d(pooled)
        if self.whitening is not None:
            v = self.whitening(v)
        if self.head is not None:
            v = apply_head(self.head, v)
        return v

    def fit_dense(self, grids: Sequence[np.ndarray], poses=None) -> DenseGlobal:
        """Learn what the config asks for from the mapping images' dense maps: NetVLAD
        words, whitening, head (`poses`: their cam_from_world, needed for the head)."""
        c = self.config
        if isinstance(grids, np.ndarray) or len(grids) == 0:
            raise VlocError(f"{self.name}.fit needs a non-empty list of images (or dense maps)")
        grids = [self._check_grid(g) for g in grids]
        if c.head and (poses is None or len(poses) != len(grids)):
            raise VlocError(f"{self.name} with head=True needs one camera pose per mapping image to train it")
        self.centroids, self.whitening, self.head, self.head_training = None, None, None, None
        if c.pooling == "netvlad":
            x = _sample_cells(grids, c.max_train, c.seed)
            self.centroids = train_vocabulary(x, c.k, seed=c.seed, max_train=c.max_train, niter=c.niter)
            self.alpha = assignment_sharpness(x[: 20_000], self.centroids)
        pooled = np.stack([self.pool(g) for g in grids])
        if c.whiten:
            self.whitening = Whitening.fit(pooled, c.whiten)
        if c.head:
            rng = np.random.default_rng(c.seed)
            views = np.stack([self._views(g, rng) for g in grids])            # (n, V, G)
            if self.whitening is not None:
                views = self.whitening(views.reshape(-1, views.shape[2])).reshape(len(grids), self.views, -1)
            positives = pose_positives(list(poses))
            self.head_training = train_head(views, positives, HeadConfig(epochs=c.head_epochs, seed=c.seed))
            self.head = self.head_training.head
        return self

    def _views(self, grid: np.ndarray, rng) -> np.ndarray:
        """(V, pooled_dim): the whole map, then random crops of 60 to 100 % of each side."""
        h, w = grid.shape[:2]
        out = [self.pool(grid)]
        for _ in range(self.views - 1):
            ch, cw = (max(1, round(s * rng.uniform(0.6, 1.0))) for s in (h, w))
            y, x = rng.integers(h - ch + 1), rng.integers(w - cw + 1)
            out.append(self.pool(grid[y:y + ch, x:x + cw]))
        return np.stack(out)

    def encode_dense(self, grid: np.ndarray) -> np.ndarray:
        """(dim,) unit vector of one dense map."""
        self._require_fit()
        return self._post(self.pool(grid))[0]

    # persistence ---------------------------------------------------------
    @staticmethod
    def head_path(path) -> Path:
        path = Path(path)
        return path.with_name(path.name + ".head.pt")

    def save(self, path) -> None:
        """HDF5 at `path` (as the other encoders) and, with a head, `<path>.head.pt`."""
        self._require_fit()
        path = Path(path)
        arrays = {}
        if self.centroids is not None:
            arrays["centroids"] = self.centroids
        if self.whitening is not None:
            arrays["whiten_mean"], arrays["whiten_projection"] = self.whitening.mean, self.whitening.projection
        write_encoder_file(path, self.name, self.config.to_dict(), arrays, {"alpha": float(self.alpha)})
        if self.head is not None:
            save_head(self.head, self.head_path(path))

    @classmethod
    def _from_file(cls, path, name: str, config: dict, attrs: dict, arrays: dict) -> DenseGlobal:
        """Called by `load_global` once the file's format and version are checked."""
        try:
            if not isinstance(config, dict):
                raise ValueError("not a dict")
            enc = cls(DenseGlobalConfig(**config))
        except (TypeError, ValueError, VlocError) as e:
            raise MapError(f"global descriptor {path} has a malformed config: {e}") from None
        if enc.name != name:
            raise MapError(f"global descriptor {path} is named {name!r} but configured as {enc.name!r}")
        c = enc.config
        try:
            if c.pooling == "netvlad":
                cen = np.asarray(arrays["centroids"], np.float32)
                if cen.shape != (c.k, enc.pooled_dim // c.k) or not np.all(np.isfinite(cen)):
                    raise ValueError(f"centroids of shape {cen.shape}")
                enc.centroids, enc.alpha = cen, float(attrs["alpha"])
            if c.whiten:
                mean, proj = arrays["whiten_mean"], arrays["whiten_projection"]
                if mean.shape != (enc.pooled_dim,) or proj.ndim != 2 or proj.shape[0] != enc.pooled_dim:
                    raise ValueError(f"whitening of shapes {mean.shape}, {proj.shape}")
                enc.whitening = Whitening(mean, proj)
        except (KeyError, ValueError, TypeError) as e:
            raise MapError(f"global descriptor {path} is corrupt: {e}") from None
        if c.head:
            enc.head = load_head(cls.head_path(path), enc.dim)
        return enc

    def __repr__(self) -> str:
        state = f"dim={self.dim}" if self.fitted else "not fitted"
        return f"DenseGlobal({self.config}, {state})"


def _sample_cells(grids: list[np.ndarray], max_train: int, seed: int) -> np.ndarray:
    """At most about `max_train` cells, the same share from every image (seeded)."""
    total = sum(g.shape[0] * g.shape[1] for g in grids)
    keep = min(1.0, max_train / total)
    rng = np.random.default_rng(seed)
    out = []
    for g in grids:
        x = g.reshape(-1, g.shape[2])
        n = max(1, int(round(keep * len(x))))
        out.append(x[np.sort(rng.choice(len(x), size=n, replace=False))] if n < len(x) else x)
    return np.concatenate(out)


def make_dense_global(name: str, **overrides) -> DenseGlobal:
    """`aliked-gem` or `aliked-netvlad` with config overrides."""
    from ..configs import check_keys
    pooling = name.removeprefix("aliked-")
    if not name.startswith("aliked-") or pooling not in POOLINGS:
        raise VlocError(f"unknown image global descriptor {name!r}; available: "
                        f"{', '.join('aliked-' + p for p in POOLINGS)}")
    overrides = {k: v for k, v in overrides.items() if k != "name"}
    check_keys(DenseGlobalConfig, {**overrides, "pooling": pooling}, f"{name} options")
    if "pooling" in overrides and overrides["pooling"] != pooling:
        raise VlocError(f"{name} has pooling {pooling!r}, not {overrides['pooling']!r}")
    return DenseGlobal(DenseGlobalConfig(**{**overrides, "pooling": pooling}))
