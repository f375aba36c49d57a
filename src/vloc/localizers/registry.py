"""Localization methods by name: how to build a map for each and how to load it.
A plain dict (no import magic); later families add their entries here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import VlocError


@dataclass(frozen=True)
class Method:
    name: str
    build: Callable        # build(frames, out_dir, config, source=..., overwrite=..., progress=...) -> manifest
    load: Callable         # load(map_dir) -> Localizer
    config_type: type      # map config dataclass (from_dict)
    description: str
    uses_prior: bool = False   # the localizer needs a position prior per query
    uses_depth: bool = False   # the localizer uses the query's depth (RGB-D queries) when there is one


def _structure() -> Method:
    from ..maps.build import build_map
    from ..maps.config import MapConfig
    from .structure import StructureLocalizer
    return Method("structure", build_map, StructureLocalizer.load, MapConfig,
                  "direct 2D-3D matching of local features against the map points, PoseLib LO-RANSAC")


def _retrieval(mode: str) -> Callable[[], Method]:
    def make() -> Method:
        from . import retrieval as r
        load = r.load_top1 if mode == "top1" else r.load_interpolated
        what = ("pose of the most similar mapping image" if mode == "top1" else
                "similarity-weighted interpolation of the top-k mapping poses")
        return Method(f"retrieval-{mode}", r.build_retrieval_map, load, r.RetrievalMapConfig,
                      f"image retrieval (global descriptors, FAISS): {what}")
    return make


def _hierarchical() -> Method:
    from ..maps.config import MapConfig
    from .hierarchical import HierarchicalLocalizer, build_hierarchical_map
    return Method("hierarchical", build_hierarchical_map, HierarchicalLocalizer.load, MapConfig,
                  "retrieve top-k images, 2D-2D matching, lift through the map's tracks, PoseLib LO-RANSAC")


def _tiled() -> Method:
    from ..maps.tiles import TiledMapConfig, build_tiled_map
    from .tiled import TiledLocalizer
    return Method("tiled", build_tiled_map, TiledLocalizer.load, TiledMapConfig,
                  "tiles (150 m, PQ-compressed descriptors) chosen by a position prior, 2D-3D per tile, "
                  "best pose wins", uses_prior=True)


def _regression(variant: str) -> Callable[[], Method]:
    def make() -> Method:
        from . import regression as r
        build = r.build_regression_map if variant == "posenet" else r.build_mapnet_map
        what = ("PoseNet" if variant == "posenet" else
                "MapNet (plus relative-pose terms between nearby frames)")
        return Method(variant, build, r.RegressionLocalizer.load, r.PoseRegressionConfig,
                      f"absolute pose regression: a CNN trained on the map regresses the pose from the image, {what}")
    return make


def _forest() -> Method:
    from .forest import ForestConfig, ForestLocalizer, build_forest_map
    return Method("forest", build_forest_map, ForestLocalizer.load, ForestConfig,
                  "scene coordinate regression forest (RGB-D mapping frames): Kabsch RANSAC with query depth, "
                  "else PnP", uses_depth=True)


def _scr(dsac: bool) -> Callable[[], Method]:
    def make() -> Method:
        from . import scr
        if dsac:
            return Method("scr-dsac", scr.build_scr_dsac_map, scr.load_scr_dsac, scr.ScrConfig,
                          "CNN scene coordinate regression fine-tuned end to end with DSAC: Kabsch RANSAC with "
                          "query depth, else PnP", uses_depth=True)
        return Method("scr", scr.build_scr_map, scr.load_scr, scr.ScrConfig,
                      "CNN scene coordinate regression (frozen ALIKED encoder, head trained on a pixel buffer): "
                      "Kabsch RANSAC with query depth, else PnP", uses_depth=True)
    return make


def _lines() -> Method:
    from .lines import LineCloudLocalizer, LineMapConfig, build_lines_map
    return Method("lines", build_lines_map, LineCloudLocalizer.load, LineMapConfig,
                  "privacy-preserving line cloud (points lifted to random lines): 2D-3D line matching, "
                  "6-point generalized solver in LO-RANSAC")


def _featuremetric() -> Method:
    from ..maps.config import MapConfig
    from .featuremetric import FeaturemetricLocalizer, build_featuremetric_map
    return Method("featuremetric", build_featuremetric_map, FeaturemetricLocalizer.load, MapConfig,
                  "direct pose refinement (PixLoc-style): the retrieved image's pose refined by aligning dense "
                  "ALIKED features at the map points, Levenberg-Marquardt coarse to fine")


METHODS: dict[str, Callable[[], Method]] = {
    "structure": _structure,
    "hierarchical": _hierarchical,
    "retrieval-top1": _retrieval("top1"),
    "retrieval-interpolated": _retrieval("interpolated"),
    "tiled": _tiled,
    "posenet": _regression("posenet"),
    "mapnet": _regression("mapnet"),
    "forest": _forest,
    "scr": _scr(dsac=False),
    "scr-dsac": _scr(dsac=True),
    "lines": _lines,
    "featuremetric": _featuremetric,
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise VlocError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    return METHODS[name]()


def map_method(map_dir) -> Method:
    """The method a map was built for (its manifest says; a retrieval map serves top-1 by
    default)."""
    from ..maps.mapdir import read_manifest
    method = read_manifest(map_dir, verify="none").get("method", "structure")
    return get_method("retrieval-top1" if method == "retrieval" else method)


def load_localizer(map_dir, config=None):
    """Load whatever localizer a map was built for (read from its manifest)."""
    m = map_method(map_dir)
    return m.load(map_dir, config) if config is not None else m.load(map_dir)
