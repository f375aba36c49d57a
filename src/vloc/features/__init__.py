"""Local feature extractors behind one interface, and the HDF5 feature store."""
from __future__ import annotations

from .base import Features, LocalExtractor
from .colmap_sift import ColmapSift, ColmapSiftConfig
from .sift import Sift, SiftConfig
from ..errors import VlocError

# name -> factory(config overrides dict) -> extractor
LOCAL_FEATURES = {
    "sift": lambda **kw: Sift(SiftConfig(**kw)),
    "rootsift": lambda **kw: Sift(SiftConfig(**{**kw, "root": True})),
    "colmap-sift": lambda **kw: ColmapSift(ColmapSiftConfig(**kw)),
}


def make_extractor(name: str, **overrides) -> LocalExtractor:
    """An extractor by registry name, with config overrides (e.g. resize_max=1024)."""
    if name not in LOCAL_FEATURES:
        raise VlocError(f"unknown local features {name!r}; available: {', '.join(LOCAL_FEATURES)}")
    overrides = {k: v for k, v in overrides.items() if k != "name"}
    try:
        return LOCAL_FEATURES[name](**overrides)
    except TypeError as e:
        raise VlocError(f"bad option for features {name!r}: {e}") from None


__all__ = ["ColmapSift", "ColmapSiftConfig", "Features", "LOCAL_FEATURES", "LocalExtractor", "Sift", "SiftConfig", "make_extractor"]
