"""Privacy and localization of a line-cloud map, and the trade-off study (issue 6,
after Chelani et al.'s "importance of sparsity"): at each sparsity (the share of the
map's lines kept), the attack's recovery rate against the true points and the
localization recall of the same sparsified line cloud. Used by `vloc privacy` and
benchmarks/lines.py. This module drives localizers and evaluation (api level); the
rest of `vloc.lines` does not."""
from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import DataError, VlocError
from ..progress import progress_bar
from .attack import AttackConfig, extent, recover_points, recovery
from .cloud import line_cloud_from_points

DEFAULT_SPARSITIES = (100.0, 50.0, 25.0, 10.0, 5.0, 1.0)
RELATIVE_THRESHOLD = 0.01          # attack: within 1 % of the points' extent
METRIC_THRESHOLDS = (0.05, 0.10)   # attack: within 5 cm / 10 cm (metric scenes)


def leaked_points(map_dir: Path, xyz: np.ndarray, tolerance: float | None = None) -> dict:
    """Look for the true points in every array a map stores: the rows of each float32 /
    float64 HDF5 dataset of shape (N, 3), and every 3 consecutive values of the other
    float32 / float64 ones, are compared with `xyz` (a KD-tree, within `tolerance`,
    default 2e-7 x the largest coordinate: a float32 copy is caught, while a line's
    anchor falls that close to a point by chance about once in 10^6 lines; at 1e-6 x the
    extent one anchor of the room's 12k paired lines did). fp16 descriptors cannot hold
    coordinates.
    Returns {"files": [...], "arrays": n, "values_checked": n, "matches": n, "model": bool}."""
    import h5py
    from scipy.spatial import cKDTree
    map_dir = Path(map_dir)
    xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
    tol = tolerance if tolerance is not None else 2e-7 * max(float(np.abs(xyz).max()) if len(xyz) else 0.0, 1e-12)
    tree = cKDTree(xyz)
    out = {"files": [], "arrays": 0, "values_checked": 0, "matches": 0,
           "model": (map_dir / "model").exists() or any(map_dir.rglob("points3D.*"))}

    def check(arr: np.ndarray):
        arr = np.asarray(arr)
        if arr.dtype not in (np.float32, np.float64) or arr.size < 3:
            return
        flat = arr.astype(np.float64).ravel()
        # every window of 3 consecutive values (rows of 3 and any other layout)
        rows = np.lib.stride_tricks.sliding_window_view(flat, 3) if arr.ndim != 2 or arr.shape[1] != 3 else arr
        d, _ = tree.query(np.asarray(rows, np.float64), k=1, distance_upper_bound=tol * 2, workers=1)
        out["arrays"] += 1
        out["values_checked"] += len(rows)
        out["matches"] += int((d <= tol).sum())

    for path in sorted(p for p in map_dir.rglob("*") if p.is_file()):
        out["files"].append(str(path.relative_to(map_dir)))
        if path.suffix == ".h5":
            with h5py.File(path, "r") as f:
                f.visititems(lambda name, obj: check(obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _headline(preset: str) -> str:
    return "1%/5°" if preset == "relative" else "5cm/5°"


def sparsity_study(points, manifest: dict, queries=(), sparsities=DEFAULT_SPARSITIES, lifting: str = "random",
                   seed: int = 0, attack: AttackConfig = AttackConfig(), localizer=None,
                   relative: float = RELATIVE_THRESHOLD,
                   metric: tuple[float, ...] = METRIC_THRESHOLDS, thresholds=None, headline: str | None = None,
                   progress: bool = True) -> list[dict]:
    """The attack and localization at each sparsity (% of the lines kept, seeded; the
    same extent and threshold at every level). `points`: a structure map's MapPoints;
    `manifest`: its manifest (the extractor); `queries`: Frames with pose and camera
    (their features are extracted once); `thresholds`: recall thresholds
    (evaluation.presets), `headline` the label reported as "recall"."""
    from ..evaluation.metrics import query_result, summarize
    from ..localizers.base import Query
    from ..localizers.lines import LineCloudLocalizer, LineLocalizerConfig
    from ..localizers.query_io import extractor_from_manifest, query_features
    localizer = localizer or LineLocalizerConfig()
    for p in sparsities:
        if not 0 < p <= 100:
            raise VlocError(f"sparsity is the percentage of lines kept, in (0, 100], got {p}")
    cloud, truth = line_cloud_from_points(points.xyz, points.descriptors, points.desc_point, lifting, seed)
    if lifting == "paired" and attack.peaks < 2:
        attack = replace(attack, peaks=2)
    ext = extent(points.xyz)
    extractor, resize_max = extractor_from_manifest(manifest)
    described = []
    for frame in progress_bar(list(queries), "query features", progress):
        q = Query(frame.name, image_path=frame.image_path, camera=frame.camera)
        timings: dict = {}
        feats, size = query_features(q, extractor, resize_max, timings)
        described.append((frame, q, feats, size, timings))
    rows = []
    rng = np.random.default_rng([seed, 2])
    order = rng.permutation(len(cloud))             # nested subsets: each level keeps a prefix
    for p in progress_bar(sorted(sparsities, reverse=True), "sparsity", progress):
        keep = np.sort(order[:max(1, int(round(p / 100 * len(cloud))))])
        sub = cloud.subset(keep)
        t = time.perf_counter()
        res = recover_points(sub.anchors, sub.directions, attack)
        attack_s = time.perf_counter() - t
        rec = recovery(res.points, truth[keep], points.xyz, relative, tuple(metric), anchors=sub.anchors,
                       scene_extent=ext)
        row = {"sparsity": p, "lines": len(sub), "descriptors": len(sub.descriptors),
               "attack": {**rec, "seconds": attack_s}}
        if described:
            loc = LineCloudLocalizer.from_cloud(sub, manifest, localizer)
            results = []
            for frame, q, feats, size, timings in described:
                t = time.perf_counter()
                est = loc.localize_features(feats, size, q, dict(timings))
                results.append(query_result(frame.name, est, frame.cam_from_world, time.perf_counter() - t))
            s = summarize(results, thresholds or [])
            recall = s["recall"].get(headline, math.nan) if headline else math.nan
            row["localization"] = {"queries": s["queries"], "failures": s["failures"], "recall": recall,
                                   "recall_label": headline, "recall_all": s["recall"],
                                   "median_translation_error": s["median_translation_error"],
                                   "median_rotation_error": s["median_rotation_error"],
                                   "median_pose_seconds": s["median_timings"].get("pose"),
                                   "reasons": sorted({r.reason for r in results if r.reason})[:5]}
        rows.append(row)
    return rows


def _length(v: float, metric: bool) -> str:
    return f"{100 * v:g} cm" if metric else f"{v:g} units"


def study_table(rows: list[dict], scene_scale: float | None = None, relative_units: bool = False,
                metric: bool = True) -> list[dict]:
    """Readable rows for markdown_table (lengths in cm on metric scenes, else map units)."""
    out = []
    for r in rows:
        a = r["attack"]
        row = {"sparsity %": r["sparsity"], "lines": r["lines"],
               f"attack within {100 * a['relative_threshold']:g}% extent": f"{100 * a['share_relative']:.1f} %"}
        for k, v in a["share_metric"].items():
            row[f"attack within {_length(float(k), metric)}"] = f"{100 * v:.1f} %"
        row["attack median err"] = _length(float(f"{a['median_error']:.3g}"), metric)
        row["anchor baseline"] = f"{100 * a['anchor_baseline']['share_relative']:.1f} %"
        loc = r.get("localization")
        if loc:
            row[f"recall {loc['recall_label']}"] = f"{100 * loc['recall']:.0f} %"
            mt = loc["median_translation_error"]
            mt = math.inf if mt is None else mt
            if relative_units and scene_scale:
                row["median t"] = f"{100 * mt / scene_scale:.3g} %"
            else:
                row["median t"] = f"{100 * mt:.3g} cm"
            mr = loc["median_rotation_error"]
            row["median r (°)"] = f"{math.inf if mr is None else mr:.3g}"
            ps = loc["median_pose_seconds"]
            row["RANSAC ms"] = "-" if ps is None else f"{1000 * ps:.0f}"
        out.append(row)
    return out


def plot_tradeoff(studies: dict[str, list[dict]], path: Path, title: str | None = None) -> Path:
    """One plot, both curves per scene: the attack's recovery rate (dashed) and the
    localization recall (solid) against the share of lines kept (log axis)."""
    import io
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7.5, 4.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for k, (name, rows) in enumerate(studies.items()):
        c = colours[k % len(colours)]
        x = [r["sparsity"] for r in rows]
        rec = [100 * r["attack"]["share_relative"] for r in rows]
        rel = rows[0]["attack"]["relative_threshold"] if rows else RELATIVE_THRESHOLD
        ax.plot(x, rec, "--o", color=c, label=f"{name}: points recovered (within {100 * rel:g} % of extent)")
        if rows and "localization" in rows[0]:
            loc = [100 * r["localization"]["recall"] for r in rows]
            label = rows[0]["localization"]["recall_label"]
            ax.plot(x, loc, "-s", color=c, label=f"{name}: localization recall ({label})")
    ax.set_xscale("log")
    ticks = sorted({r["sparsity"] for rows in studies.values() for r in rows})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("lines kept (% of the map's points)")
    ax.set_ylabel("%")
    ax.set_ylim(-2, 102)
    ax.invert_xaxis()
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower left", fontsize=7)
    ax.set_title(title or "line clouds: privacy (attack) vs localization, by sparsity")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    return path


def run_privacy(out: Path, data=None, split: str = "all", fold: int = 0, structure_map: Path | None = None,
                map_config=None, sparsities=DEFAULT_SPARSITIES, lifting: str = "random", seed: int = 0,
                keep: float = 1.0, attack: AttackConfig = AttackConfig(), max_queries: int | None = None,
                overwrite: bool = False, progress: bool = True) -> dict:
    """`vloc privacy`: a line-cloud map in `out/lines` (from `structure_map`, or from a
    structure map built from `data`'s split), checked to hold no true point, and the
    sparsity study (attack; localization of the split's queries when `data` is given).
    Writes out/privacy.json and out/privacy.png; returns the JSON document."""
    import json
    import tempfile
    from ..datasets import Scene
    from ..evaluation.presets import default_preset, thresholds_for
    from ..evaluation.report import versions
    from ..maps.mapdir import read_manifest
    from ..maps.points import read_points
    from .mapping import LineMapConfig, convert_structure_map
    out = Path(out)
    if structure_map is None and data is None:
        raise VlocError("give a dataset (with --split) or a structure map (--structure-map)")
    scene = fold_obj = None
    if data is not None:
        scene = data if isinstance(data, Scene) else Scene.load(data)
        folds = scene.split(split)
        if not 0 <= fold < len(folds):
            raise DataError(f"split {split!r} has {len(folds)} fold(s); fold {fold} does not exist")
        fold_obj = folds[fold]
    lines_dir = out / "lines"
    if lines_dir.exists() and not overwrite:
        raise VlocError(f"output exists: {lines_dir} (use --overwrite to replace it)")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".vloc-privacy-", dir=out) as work:
        if structure_map is None:
            from ..maps.build import build_map
            from ..maps.config import MapConfig
            structure_map = Path(work) / "structure"
            source = {"scene": scene.name, "path": str(scene.root), "format": scene.format, "split": split,
                      "fold": fold_obj.name, "frames": [f.name for f in fold_obj.mapping]}
            build_map(list(fold_obj.mapping), structure_map, map_config or MapConfig(), source, progress=progress)
        structure_map = Path(structure_map)
        if (structure_map / "structure" / "manifest.json").is_file():
            structure_map = structure_map / "structure"
        manifest = read_manifest(structure_map, verify="size")
        if manifest.get("method") != "structure":
            raise VlocError(f"{structure_map} is a {manifest.get('method')!r} map; give a structure map")
        queries = []
        if fold_obj is not None:
            mapped = set(manifest.get("source", {}).get("frames", []))
            queries = [f for f in fold_obj.query if f.has_pose and f.name not in mapped]
            if max_queries:
                queries = queries[:max_queries]
        points = read_points(structure_map / "points.h5")
        line_manifest = convert_structure_map(structure_map, lines_dir, LineMapConfig(lifting=lifting, seed=seed,
                                                                                       keep=keep), overwrite=overwrite)
        leak = leaked_points(lines_dir, points.xyz)
        preset = default_preset(scene) if scene is not None else "indoor"
        scale = scene.scale() if scene is not None else None
        thresholds = thresholds_for(preset, scale) if queries else None
        rows = sparsity_study(points, manifest, queries, sparsities, lifting, seed, attack, relative=RELATIVE_THRESHOLD,
                              metric=METRIC_THRESHOLDS, thresholds=thresholds, headline=_headline(preset),
                              progress=progress)
    doc = {"map": str(lines_dir), "lines": line_manifest["stats"]["lines"], "lifting": lifting, "seed": seed,
           "keep": keep, "points": len(points), "leak_check": {k: v for k, v in leak.items() if k != "files"},
           "files": leak["files"], "scene": scene.name if scene else manifest.get("source", {}).get("scene"),
           "split": split if scene else None, "metric": bool(scene.metric) if scene else None,
           "preset": preset if queries else None, "scene_scale": scale, "queries": len(queries),
           "attack_config": attack.to_dict(), "sparsity": rows, "seconds": time.perf_counter() - t0,
           "versions": versions()}
    (out / "privacy.json").write_text(json.dumps(doc, indent=1, default=str))
    plot_tradeoff({doc["scene"] or "map": rows}, out / "privacy.png")
    return doc
