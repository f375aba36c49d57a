"""The evaluation driver: for each fold of a split, build a map (or use a given one),
localize every query and compare with ground truth."""
from __future__ import annotations

import resource
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..progress import progress_bar

from ..datasets import Scene
from ..errors import DataError
from ..localizers.base import Query
from ..localizers.prior import simulated_priors
from .align import sfm_alignment
from .metrics import QueryResult, query_result, summarize
from .presets import default_preset, thresholds_for


DEFAULT_PRIOR_RADIUS = 20.0      # map units (metres on geo-registered maps)


@dataclass
class EvaluationRun:
    results: list[QueryResult]
    summary: dict
    meta: dict
    config: dict
    maps: list[dict] = field(default_factory=list)   # per fold: map stats and build seconds


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory since the last reset (VmHWM), else since the process started."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def evaluate(scene: Scene, split: str, method: str = "structure", map_config=None,
             map_dir: Path | None = None, localizer_config=None, preset: str | None = None,
             known_intrinsics: bool = True, prior_radius: float | None = None, prior_noise: float = 0.0,
             work_dir: Path | None = None, progress: bool = True) -> EvaluationRun:
    """Evaluate `method` on `scene` with the named split. With `map_dir`, queries of the
    (single-fold) split are localized against that map instead of building one.
    Position priors (GPS-like: the true centre plus Gaussian noise of `prior_noise` per
    axis, seeded) are given to the queries when `prior_radius` is set, and by default
    (radius DEFAULT_PRIOR_RADIUS, no noise) to methods that need one."""
    from ..localizers.registry import get_method
    from ..maps.depth import read_depth
    folds = scene.split(split)
    if not any(f.query for f in folds):
        raise DataError(f"split {split!r} of {scene.name} has no query frame")
    if map_dir is not None:
        if len(folds) > 1:
            raise DataError(f"split {split!r} has {len(folds)} folds but one map was given; "
                            "omit the map to build one per fold")
        alignment = sfm_alignment(map_dir, scene.frames)
        _check_map_source(map_dir, scene, folds[0], by_file_name=alignment is not None)
    else:
        alignment = None
    m = get_method(method)
    if prior_radius is None and m.uses_prior:
        prior_radius = DEFAULT_PRIOR_RADIUS
    map_config = map_config if map_config is not None else m.config_type()
    results: list[QueryResult] = []
    maps: list[dict] = []
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for k, fold in enumerate(folds):
            t = time.perf_counter()
            if map_dir is None:
                fold_map = Path(tmp) / f"map{k}"
                manifest = m.build(list(fold.mapping), fold_map, map_config,
                                   source=_source(scene, split, fold), progress=progress and len(folds) == 1)
                maps.append({"fold": fold.name, "build_seconds": time.perf_counter() - t,
                             "stats": manifest["stats"],
                             "bytes": sum(f["bytes"] for f in manifest["files"].values())})
                localizer = m.load(fold_map, localizer_config) if localizer_config else m.load(fold_map)
            else:       # the requested method's loader (retrieval maps serve top1 and interpolated)
                localizer = m.load(map_dir, localizer_config) if localizer_config else m.load(map_dir)
            queries = [f for f in fold.query if f.has_pose]
            priors = simulated_priors(queries, prior_radius, prior_noise, seed=k) if prior_radius else {}
            for frame in progress_bar(queries, f"{scene.name} {fold.name}", progress):
                depth = read_depth(frame) if m.uses_depth and frame.has_depth else None
                q = Query(frame.name, image_path=frame.image_path,
                          camera=frame.camera if known_intrinsics else None, depth=depth)
                reset_peak_rss()          # peak memory of this query, loaded map included
                t = time.perf_counter()
                est = localizer.localize(q, priors.get(frame.name))
                seconds = time.perf_counter() - t
                if alignment is not None and est.success:
                    est = replace(est, cam_from_world=alignment.pose_to_gt(est.cam_from_world))
                results.append(query_result(frame.name, est, frame.cam_from_world, seconds,
                                            fold=fold.name, peak_memory_mb=peak_rss_mb()))
    preset = preset or default_preset(scene)
    scale = scene.scale()
    summary = summarize(results, thresholds_for(preset, scale))
    if maps:
        summary["median_map_seconds"] = sorted(mm["build_seconds"] for mm in maps)[len(maps) // 2]
        summary["median_map_mb"] = sorted(mm["bytes"] for mm in maps)[len(maps) // 2] / 2**20
    meta = {"scene": scene.name, "format": scene.format, "method": method, "split": split,
            "preset": preset, "scene_scale": scale, "folds": len(folds),
            "known_intrinsics": known_intrinsics,
            "prior": {"radius": prior_radius, "noise": prior_noise} if prior_radius else None,
            "alignment": alignment.to_dict() if alignment is not None else None}
    config = {"map": map_config.to_dict() if hasattr(map_config, "to_dict") else {},
              "localizer": localizer.config.to_dict() if hasattr(localizer, "config") else {}}
    return EvaluationRun(results, summary, meta, config, maps)


def _source(scene: Scene, split: str, fold) -> dict:
    return {"scene": scene.name, "path": str(scene.root), "format": scene.format, "split": split,
            "fold": fold.name, "frames": [f.name for f in fold.mapping]}


def _check_map_source(map_dir: Path, scene: Scene, fold, by_file_name: bool = False) -> None:
    """A query that is one of the map's own images would measure nothing (an error); a
    map of another scene is most likely the wrong map (a warning: it may be meant).
    `by_file_name`: an SfM map of copied photos, whose names are file names (and whose
    folder's name is not the scene's)."""
    from ..maps.mapdir import read_manifest
    source = read_manifest(map_dir, verify="none").get("source", {})
    if source.get("scene") and source["scene"] != scene.name and not by_file_name:
        warnings.warn(f"map {map_dir} was built from scene {source['scene']!r}; these queries are of "
                      f"{scene.name!r}", stacklevel=3)
    mapped = set(source.get("frames", []))
    queries = {f.name: f.name for f in fold.query}
    if by_file_name:
        mapped = {Path(n).name for n in mapped}
        queries = {Path(n).name: n for n in queries}
    leaked = sorted(queries[n] for n in mapped & set(queries))
    if leaked:
        raise DataError(f"{len(leaked)} query frame(s) of this split are in the map "
                        f"(e.g. {leaked[0]}): build the map with the same split")
