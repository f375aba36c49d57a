"""Local feature extractors behind one interface (SIFT variants; ALIKED, DISK, XFeat
through kornia; SuperPoint with weights a user gives), and the HDF5 feature store."""
from __future__ import annotations

from .base import Features, LocalExtractor
from .colmap_sift import ColmapSift, ColmapSiftConfig
from .learned import Aliked, AlikedConfig, Disk, DiskConfig, XFeat, XFeatConfig
from .sift import Sift, SiftConfig
from ..errors import VlocError

# name -> factory(config overrides dict) -> extractor
LOCAL_FEATURES = {
    "sift": lambda **kw: Sift(SiftConfig(**kw)),
    "rootsift": lambda **kw: Sift(SiftConfig(**{**kw, "root": True})),
    "colmap-sift": lambda **kw: ColmapSift(ColmapSiftConfig(**kw)),
    # learned (kornia + packaged weights); networks are built on first use
    "aliked": lambda **kw: Aliked(AlikedConfig(**kw)),
    "disk": lambda **kw: Disk(DiskConfig(**kw)),
    "xfeat": lambda **kw: XFeat(XFeatConfig(**kw)),
    "superpoint": lambda **kw: _superpoint(**kw),    # needs weights=PATH (none ship with vloc)
}


def _superpoint(**kw):
    from .superpoint import make
    return make(**kw)


def make_extractor(name: str, **overrides) -> LocalExtractor:
    """An extractor by registry name, with config overrides (e.g. resize_max=1024)."""
    if name not in LOCAL_FEATURES:
        raise VlocError(f"unknown local features {name!r}; available: {', '.join(LOCAL_FEATURES)}")
    overrides = {k: v for k, v in overrides.items() if k != "name"}
    try:
        return LOCAL_FEATURES[name](**overrides)
    except TypeError as e:
        raise VlocError(f"bad option for features {name!r}: {e}") from None


__all__ = ["Aliked", "AlikedConfig", "ColmapSift", "ColmapSiftConfig", "Disk", "DiskConfig", "Features",
           "LOCAL_FEATURES", "LocalExtractor", "Sift", "SiftConfig", "XFeat", "XFeatConfig", "make_extractor"]
