"""Appearance-change test bed (issue 7): the synthetic room mapped from day images
(known poses, `structure` method) once per local feature, then localized from the same
query poses rendered under every condition of `vloc.datasets.synthetic.conditions`
(day, low-sun, dusk, night, season, noise-blur). Prints recall per condition per
feature (5 cm / 5 deg and 25 cm / 2 deg) and writes, under --out:

    appearance.json          every number (per feature, per condition: recall, medians, times)
    recall.png               recall per condition, a bar per feature (both thresholds)
    matches/<f>_<cond>.png   query vs its nearest mapping image: matches (mutual NN + ratio),
                             inliers (green) = within 4 px of the ground-truth reprojection
                             (query depth + poses), outliers red
    scenes/<cond>/           the rendered scenes (reused by later runs)

    python benchmarks/appearance.py [--features sift rootsift aliked disk xfeat] [--threads 1]
        [--reuse-maps]    (keep the maps of a previous run of the same day scene and config)
        [--features sift:contrast_threshold=0.01 colmap-sift ...]   (extractor options, other extractors)

Results and their reading: docs/features.md.

The real images of ../shared/data: aachen_day_night_sample is checked and reported
(it has no night image and no query pose, see `aachen_status`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

FEATURES = ("sift", "rootsift", "aliked", "disk", "xfeat")
THRESHOLDS = ((0.05, 5.0, "5cm/5°"), (0.25, 2.0, "25cm/2°"))
FINE = ((0.01, 1.0, "1cm/1°"), (0.02, 2.0, "2cm/2°"))        # in the JSON only


def parse_args(argv=None):
    from vloc.datasets.synthetic.conditions import CONDITION_NAMES
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", nargs="+", default=list(FEATURES),
                    help="registry names, optionally with extractor options: sift:contrast_threshold=0.01")
    ap.add_argument("--conditions", nargs="+", default=list(CONDITION_NAMES))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/appearance"))
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--focal", type=float, default=500.0)
    ap.add_argument("--n-mapping", type=int, default=60)
    ap.add_argument("--n-query", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-keypoints", type=int, default=4096)
    ap.add_argument("--points", default="triangulate", help="map points: triangulate (known poses) | depth")
    ap.add_argument("--ratio", type=float, default=None, help="2D-3D ratio test (default: the localizer's)")
    ap.add_argument("--map-ratio", type=float, default=None, help="2D-2D ratio test when mapping")
    ap.add_argument("--match-features", nargs="*", default=["sift", "aliked"],
                    help="features to draw match pictures for")
    ap.add_argument("--match-query", type=int, default=0, help="query index of the match pictures")
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenCV threads")
    ap.add_argument("--reuse-maps", action="store_true",
                    help="keep a map of --out/maps already built from the same day scene and config")
    ap.add_argument("--json", type=Path, default=None, help="default: OUT/appearance.json")
    ap.add_argument("--plot", type=Path, default=None, help="default: OUT/recall.png")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    return ap.parse_args(argv)


def aachen_status(data: Path) -> dict:
    """Whether aachen_day_night_sample can be evaluated: it needs query frames with a pose
    (ground truth) and images under another condition than day."""
    import vloc
    root = data / "aachen_day_night_sample"
    if not root.is_dir():
        return {"usable": False, "reason": f"{root} not found"}
    scene = vloc.Scene.load(root)
    names = [f.name for f in scene.frames]
    night_files = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                         if p.is_file() and "night" in str(p.relative_to(root)).lower())
    query_images = sorted(str(p.relative_to(root)) for p in (root / "images_upright" / "query").rglob("*.jpg"))
    reason = (f"the importer ({scene.format}) gives {len(scene.frames)} frames, all database images with "
              f"SfM poses ({', '.join(names)}); the {len(query_images)} query images are day images without "
              f"a pose (the benchmark keeps them secret) and there is no night image "
              f"({len(night_files)} files named night): nothing to measure across conditions")
    return {"usable": False, "format": scene.format, "frames": names, "query_images": query_images,
            "night_files": night_files, "reason": reason}


def _extractor_config(name: str):
    """The default config of a registered extractor (to type options given as text)."""
    from vloc.features import AlikedConfig, DiskConfig, SiftConfig, XFeatConfig
    from vloc.features.colmap_sift import ColmapSiftConfig
    return {"sift": SiftConfig, "rootsift": SiftConfig, "colmap-sift": ColmapSiftConfig, "aliked": AlikedConfig,
            "disk": DiskConfig, "xfeat": XFeatConfig}[name]()


def _reusable_map(map_dir: Path, config, scene):
    """The manifest of a structure map in `map_dir` built with `config` from `scene`'s
    official mapping frames, else None."""
    from vloc.errors import VlocError
    from vloc.maps.mapdir import read_manifest
    try:
        m = read_manifest(map_dir, verify="size")
    except (VlocError, OSError):
        return None
    frames = [f.name for f in scene.split("official")[0].mapping]
    src = m.get("source", {})
    same = (m.get("method") == "structure" and m["config"].get("map") == config.to_dict()
            and src.get("path") == str(scene.root) and src.get("frames") == frames)
    return m if same else None


def nearest_mapping(query, mapping) -> int:
    """The mapping frame nearest to the query (centre distance + 1 m per 30 deg of view angle)."""
    qc, qz = query.cam_from_world.center, query.cam_from_world.R[2]
    cost = [np.linalg.norm(m.cam_from_world.center - qc)
            + np.degrees(np.arccos(np.clip(m.cam_from_world.R[2] @ qz, -1, 1))) / 30.0 for m in mapping]
    return int(np.argmin(cost))


def match_picture(path: Path, extractor_cfg: dict, query, ref, title: str, ratio: float = 0.8) -> dict:
    """Query vs mapping image: mutual NN + ratio matches; an inlier projects (query depth,
    poses) within 4 px of its match. Returns the counts."""
    from vloc.evaluation.match_plot import save_match_plot
    from vloc.features import make_extractor
    from vloc.imageio import read_image
    from vloc.maps.depth import keypoint_depth, read_depth
    from vloc.matching.nn import match_mutual_ratio
    cfg = dict(extractor_cfg)
    ex = make_extractor(cfg.pop("name"), **cfg)
    imgs, feats = [], []
    for fr in (query, ref):
        img, size = read_image(fr.image_path, grayscale=True, max_size=extractor_cfg["resize_max"])
        imgs.append(read_image(fr.image_path)[0])
        feats.append(ex.extract(img, size))
    m = match_mutual_ratio(feats[0].descriptors, feats[1].descriptors, ratio)
    xy0, xy1 = feats[0].keypoints[m[:, 0]], feats[1].keypoints[m[:, 1]]
    z = keypoint_depth(read_depth(query), xy0, query.camera)
    cam = query.camera
    X = query.cam_from_world.inverse().transform(np.c_[cam.unproject(xy0) * z[:, None], z])
    p = ref.cam_from_world.transform(X)
    proj = ref.camera.project(p) if len(p) else np.zeros((0, 2))
    err = np.linalg.norm(proj - xy1, axis=1) if len(p) else np.zeros(0)
    inl = np.isfinite(err) & (err < 4.0) & (p[:, 2] > 0 if len(p) else True)
    save_match_plot(path, imgs[0], imgs[1], xy0, xy1, inl, max_lines=200,
                    title=f"{title}: {int(inl.sum())} / {len(inl)} inliers (4 px, ground truth)"
                          + (", 200 drawn" if len(inl) > 200 else ""))
    return {"query": query.name, "reference": ref.name, "keypoints": [len(feats[0]), len(feats[1])],
            "matches": int(len(inl)), "inliers": int(inl.sum())}


def plot_recall(path: Path, results: dict, conditions: list[str], features: list[str]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(THRESHOLDS), figsize=(6 * len(THRESHOLDS), 4), sharey=True)
    width = 0.8 / len(features)
    x = np.arange(len(conditions))
    for ax, (_, _, label) in zip(np.atleast_1d(axes), THRESHOLDS):
        for k, f in enumerate(features):
            vals = [100 * results[f]["conditions"][c]["recall"][label] for c in conditions]
            ax.bar(x + (k - (len(features) - 1) / 2) * width, vals, width, label=f)
        ax.set_xticks(x, conditions)
        ax.set_title(f"recall {label}")
        ax.set_ylim(0, 105)
        ax.grid(axis="y", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("% of queries")
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(features), fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    torch.set_num_threads(args.threads)
    import vloc
    from vloc._libs import cv2
    cv2.setNumThreads(args.threads)
    from vloc.datasets.synthetic import SyntheticConfig
    from vloc.datasets.synthetic.conditions import CONDITIONS, generate_condition_scenes
    from vloc.evaluation import markdown_table, versions
    from vloc.evaluation.metrics import recall, true_median
    from vloc.evaluation.run import evaluate
    from vloc.localizers.structure import StructureConfig
    from vloc.maps.config import MapConfig

    out = args.out
    cfg = SyntheticConfig(name="appearance_room", width=args.width, height=args.height, focal=args.focal,
                          n_mapping=args.n_mapping, n_query=args.n_query, seed=args.seed)
    t = time.perf_counter()
    scenes = generate_condition_scenes(out / "scenes", cfg, args.conditions)
    print(f"scenes: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    day = scenes["day"] if "day" in scenes else generate_condition_scenes(out / "scenes", cfg, ["day"])["day"]
    fold = day.split("official")[0]

    results: dict = {}
    rows = []
    for feat in args.features:
        name, _, opts = feat.partition(":")
        options = {}
        for kv in filter(None, opts.split(",")):
            k, _, v = kv.partition("=")
            options[k] = type(getattr(_extractor_config(name), k))(v)
        map_kw = {"points": args.points, "max_keypoints": args.max_keypoints, "feature_options": options}
        if args.map_ratio:
            map_kw["ratio"] = args.map_ratio
        mcfg = MapConfig(features=name, **map_kw)
        loc_cfg = StructureConfig(**({"ratio": args.ratio} if args.ratio else {}))
        map_dir = out / "maps" / feat.replace(":", "_").replace(",", "_").replace("=", "")
        t = time.perf_counter()
        manifest = _reusable_map(map_dir, mcfg, day) if args.reuse_maps else None
        if manifest is None:
            manifest = vloc.build_map(day, map_dir, mcfg, split="official", overwrite=True, progress=False)
            build_s = time.perf_counter() - t
        else:
            build_s = manifest["stats"].get("timings", {}).get("total", float("nan"))
            print(f"{feat}: map reused from {map_dir}", file=sys.stderr)
        stats = manifest["stats"]
        print(f"{feat}: map {build_s:.1f} s, {stats['points']} points", file=sys.stderr, flush=True)
        per_cond = {}
        for cond in args.conditions:
            t = time.perf_counter()
            run = evaluate(scenes[cond], "official", "structure", map_dir=map_dir, localizer_config=loc_cfg,
                           progress=False)
            res = run.results
            rec = {label: recall(res, tt, rr) for tt, rr, label in THRESHOLDS + FINE}
            per_cond[cond] = {
                "recall": rec, "queries": len(res), "failures": sum(not r.success for r in res),
                "median_translation_cm": 100 * true_median([r.translation_error for r in res]),
                "median_rotation_deg": true_median([r.rotation_error for r in res]),
                "median_inliers": float(np.median([r.inliers for r in res])),
                "median_seconds": float(np.median([r.seconds for r in res])),
                "median_feature_seconds": float(np.median([r.timings.get("features", np.nan) for r in res])),
                "reasons": sorted({r.reason for r in res if r.reason}),
                "per_query": [{"name": r.name, "t_cm": 100 * r.translation_error, "r_deg": r.rotation_error,
                               "inliers": r.inliers, "correspondences": r.correspondences,
                               "feature_s": r.timings.get("features")} for r in res],
                "wall_seconds": time.perf_counter() - t,
            }
            row = {"feature": feat, "condition": cond, "queries": len(res),
                   **{f"recall {k}": f"{100 * rec[k]:.0f} %" for _, _, k in THRESHOLDS},
                   "median t (cm)": round(per_cond[cond]["median_translation_cm"], 2),
                   "median inliers": per_cond[cond]["median_inliers"],
                   "s/query": round(per_cond[cond]["median_seconds"], 3)}
            rows.append(row)
            print(f"  {cond}: {row}", file=sys.stderr, flush=True)
        results[feat] = {"map": {"build_seconds": build_s, "points": stats["points"],
                                 "images": stats["images"], "config": mcfg.to_dict(),
                                 "extractor": manifest["config"]["extractor"]},
                         "conditions": per_cond}

    # match pictures: one query (the same pose under every condition) vs its nearest map image
    pictures = {}
    for feat in [f for f in args.match_features if f in results]:
        ext_cfg = results[feat]["map"]["extractor"]
        for cond in args.conditions:
            q = scenes[cond].split("official")[0].query[args.match_query]
            ref = fold.mapping[nearest_mapping(q, fold.mapping)]
            pictures[f"{feat}/{cond}"] = match_picture(out / "matches" / f"{feat}_{cond}.png", ext_cfg, q, ref,
                                                       f"{feat} / {cond}: {q.name} vs {ref.name}")

    # the figure of issue 7: the best learned feature >= SIFT everywhere, > at night and dusk
    learned = [f for f in results if f.split(":")[0] in ("aliked", "disk", "xfeat", "superpoint")]
    figure = {}
    if "sift" in results and learned:
        key = THRESHOLDS[0][2]

        def score(f):
            return sum(results[f]["conditions"][c]["recall"][key] for c in args.conditions)
        best = "aliked" if "aliked" in learned else max(learned, key=score)
        for f in dict.fromkeys([best, max(learned, key=score)]):
            ok_all = all(results[f]["conditions"][c]["recall"][key] >= results["sift"]["conditions"][c]["recall"][key]
                         for c in args.conditions)
            strict = {c: results[f]["conditions"][c]["recall"][key] > results["sift"]["conditions"][c]["recall"][key]
                      for c in ("night", "dusk") if c in args.conditions}
            figure[f] = {"geq_sift_everywhere": ok_all, "strictly_higher": strict,
                         "passes": ok_all and all(strict.values())}

    print(markdown_table(rows))
    for f, v in figure.items():
        print(f"figure ({f} vs sift, {THRESHOLDS[0][2]}): >= everywhere: {v['geq_sift_everywhere']}, "
              f"strictly higher: {v['strictly_higher']} -> {'PASS' if v['passes'] else 'FAIL'}")
    aachen = aachen_status(args.data)
    print(f"aachen_day_night_sample: {aachen['reason']}")
    plot = args.plot or out / "recall.png"
    plot_recall(plot, results, args.conditions, list(results))
    doc = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.node(),
                    "cpu_count": os.cpu_count(), "threads": args.threads, "argv": sys.argv[1:],
                    "scene": cfg.to_dict(), "conditions": {c: CONDITIONS[c].description for c in args.conditions},
                    "thresholds": [list(t) for t in THRESHOLDS], "versions": versions()},
           "features": results, "figure": figure, "match_pictures": pictures, "aachen_day_night_sample": aachen}
    out.mkdir(parents=True, exist_ok=True)
    from vloc.evaluation.report import _jsonable        # non-finite -> null: strict JSON
    js = args.json or out / "appearance.json"
    js.write_text(json.dumps(_jsonable(doc), indent=1, allow_nan=False))
    print(f"JSON: {js}, plot: {plot}, pictures: {out / 'matches'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
