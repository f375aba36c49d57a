"""Line clouds (issue 6): privacy-preserving localization against the point map it is
made from, and the privacy / localization trade-off by sparsity.

1. Every scene of benchmarks/scenes.py with its reference split: per fold one
   structure map, lifted to a line cloud (random directions, seed 0); the same queries
   are localized against both (`structure` and `lines`). Reported: median errors,
   recall, the line RANSAC time per query (median and max), and the checks of the
   issue (line median errors <= 2x the point map's; RANSAC <= 1 s per query).
2. The sparsity study (100, 50, 25, 10, 5, 1 % of the lines) on the synthetic room and
   on nerf_fox: the attack's recovery (share of the points within 1 % of the points'
   extent) and the localization recall of the same sparsified cloud; one plot.

    python benchmarks/lines.py [--data ../shared/data] [--scenes fountain ...] [--no-study] [--out benchmarks/out/lines]
        [--features aliked] [--map resize_max=1024 ...]     (the point map's features and options)

Writes lines.json, lines.md and sparsity.png into --out. Timings on a shared 2-core
machine are upper bounds.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vloc.evaluation import markdown_table, to_json
from vloc.evaluation.metrics import query_result, summarize
from vloc.evaluation.presets import default_preset, thresholds_for
from vloc.lines.mapping import LineMapConfig, convert_structure_map
from vloc.lines.privacy import DEFAULT_SPARSITIES, plot_tradeoff, sparsity_study, study_table
from vloc.localizers.lines import LineCloudLocalizer
from vloc.localizers.structure import StructureLocalizer, query_from_frame
from vloc.maps.build import build_map
from vloc.maps.config import MapConfig
from vloc.maps.mapdir import read_manifest
from vloc.maps.points import read_points

from scenes import SCENES, SYNTHETIC, default_data, load_scene, map_config, write_results

STUDY_SCENES = (SYNTHETIC, "nerf_fox")


def headline(preset: str) -> str:
    return "1%/5°" if preset == "relative" else "5cm/5°"


def run_scene(data: Path, rel: str, split: str, work: Path, keep_map: bool, config: MapConfig = MapConfig()) -> dict:
    scene = load_scene(data, rel)
    preset, scale = default_preset(scene), scene.scale()
    ths = thresholds_for(preset, scale)
    results = {"structure": [], "lines": []}
    t0 = time.perf_counter()
    kept = None
    for k, fold in enumerate(scene.split(split)):
        smap, lmap = work / f"{k}-structure", work / f"{k}-lines"
        build_map(list(fold.mapping), smap, config, {"frames": [f.name for f in fold.mapping]}, progress=False)
        convert_structure_map(smap, lmap, LineMapConfig())
        locs = {"structure": StructureLocalizer.load(smap), "lines": LineCloudLocalizer.load(lmap)}
        for frame in [f for f in fold.query if f.has_pose]:
            q = query_from_frame(frame)
            for name, loc in locs.items():
                t = time.perf_counter()
                est = loc.localize(q)
                results[name].append(query_result(frame.name, est, frame.cam_from_world, time.perf_counter() - t,
                                                  fold=fold.name))
        if keep_map:
            kept = (smap, fold)
    summaries = {m: summarize(r, ths) for m, r in results.items()}
    unit = (100.0 / scale, "%") if preset == "relative" else (100.0, "cm")
    s, l = summaries["structure"], summaries["lines"]
    inf = math.inf

    def med(x):
        return inf if x is None else x

    pose_ms = [1000 * r.timings["pose"] for r in results["lines"] if "pose" in r.timings]
    ratio_t = med(l["median_translation_error"]) / max(med(s["median_translation_error"]), 1e-12)
    ratio_r = med(l["median_rotation_error"]) / max(med(s["median_rotation_error"]), 1e-12)
    checks = {"t <= 2x points": ratio_t <= 2.0, "r <= 2x points": ratio_r <= 2.0,
              "RANSAC <= 1 s (every query)": max(pose_ms, default=0) <= 1000.0}
    label = headline(preset)
    row = {"scene": rel, "split": split, "queries": s["queries"],
           "points t": f"{med(s['median_translation_error']) * unit[0]:.3g} {unit[1]}",
           "lines t": f"{med(l['median_translation_error']) * unit[0]:.3g} {unit[1]}",
           "t ratio": f"{ratio_t:.2f}",
           "points r (°)": f"{med(s['median_rotation_error']):.3g}",
           "lines r (°)": f"{med(l['median_rotation_error']):.3g}", "r ratio": f"{ratio_r:.2f}",
           "recall": label,
           "recall points": f"{100 * s['recall'].get(label, 0):.0f} %",
           "recall lines": f"{100 * l['recall'].get(label, 0):.0f} %",
           "line failures": l["failures"],
           "RANSAC ms median": f"{np.median(pose_ms):.0f}" if pose_ms else "-",
           "RANSAC ms max": f"{max(pose_ms):.0f}" if pose_ms else "-",
           "points RANSAC ms": f"{1000 * s['median_timings'].get('pose', float('nan')):.0f}",
           "lines s/query": f"{l['median_seconds']:.3g}",
           "pass": "yes" if all(checks.values()) else "NO: " + ", ".join(c for c, ok in checks.items() if not ok)}
    meta = {"scene": scene.name, "split": split, "preset": preset, "scene_scale": scale}
    docs = {m: to_json(results[m], summaries[m], {}, {}, {**meta, "method": m}) for m in results}
    return {"row": row, "checks": checks, "evaluation": docs, "kept": kept, "scene": scene, "preset": preset,
            "wall_seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--scenes", nargs="*", help="substrings of scene paths to run (default: all)")
    ap.add_argument("--no-study", action="store_true", help="skip the sparsity study")
    ap.add_argument("--sparsity", type=float, nargs="+", default=list(DEFAULT_SPARSITIES))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/lines"))
    ap.add_argument("--features", default=MapConfig.features, help="local features (default: %(default)s)")
    ap.add_argument("--map", nargs="*", default=[], metavar="KEY=VALUE", help="other map options, e.g. resize_max=1024")
    args = ap.parse_args(argv)
    config = map_config(args.features, args.map)
    rows, out, studies, study_rows = [], [], {}, {}
    with tempfile.TemporaryDirectory(prefix="vloc-lines-bench-") as tmp:
        for i, (rel, split, _ref) in enumerate(SCENES):
            if args.scenes and not any(s in rel for s in args.scenes):
                continue
            r = run_scene(args.data, rel, split, Path(tmp) / f"s{i}", keep_map=rel in STUDY_SCENES, config=config)
            rows.append(r["row"])
            print(f"{rel}: {r['row']}", file=sys.stderr, flush=True)
            if r["kept"] is not None and not args.no_study:
                smap, fold = r["kept"]
                t = time.perf_counter()
                queries = [f for f in fold.query if f.has_pose]
                scene = r["scene"]
                study = sparsity_study(read_points(smap / "points.h5"), read_manifest(smap), queries,
                                       args.sparsity, thresholds=thresholds_for(r["preset"], scene.scale()),
                                       headline=headline(r["preset"]), progress=True)
                name = "synthetic room" if rel == SYNTHETIC else rel
                studies[name] = study
                study_rows[name] = study_table(study, scene.scale(), r["preset"] == "relative", bool(scene.metric))
                print(f"{rel}: sparsity study {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
            out.append({k: v for k, v in r.items() if k not in ("kept", "scene")})
    text = "## structure vs lines\n\n" + markdown_table(rows)
    for name, table in study_rows.items():
        text += f"\n\n## sparsity study: {name}\n\n" + markdown_table(table)
    if studies:
        plot_tradeoff(studies, args.out / "sparsity.png",
                      title="line clouds: attack recovery vs localization recall, by sparsity")
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lines.md").write_text(text + "\n")
    write_results(args.out / "lines.json", {"map": config.to_dict(), "lines": LineMapConfig().to_dict()},
                  {"scenes": out, "sparsity": studies})
    return 0


if __name__ == "__main__":
    sys.exit(main())
