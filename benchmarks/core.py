"""Core benchmark (issue 2): map + localize + evaluate with the structure-based
localizer on every scene of ../shared/data that has query ground truth, with the
reference splits. Prints a Markdown table and writes JSON.

    python benchmarks/core.py [--data ../shared/data] [--scenes fountain-P11 ...] [--json out.json]

With `--reference learned` (issue 7) the rows are checked against hloc with
ALIKED + LightGlue instead: recall >= hloc's, medians <= 1.1x, s/query <= 0.1x; use it
with a learned feature, e.g. `--features aliked --reference learned`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vloc.evaluation import markdown_table, to_json
from vloc.evaluation.run import evaluate
from vloc.estimation import PoseConfig
from vloc.localizers.structure import StructureConfig
from vloc.maps.config import MapConfig

from scenes import LEARNED_REFERENCE, SCENES, default_data, load_scene, map_config, write_results

def headline_recall(summary: dict, relative: bool) -> float:
    key = "1%/5°" if relative else "5cm/5°"
    return summary["recall"].get(key, float("nan"))


def learned_checks(s: dict, med_t: float, ref) -> dict:
    """Issue 7's figures against hloc with ALIKED + LightGlue."""
    return {
        "recall >= hloc": headline_recall(s, False) >= ref[2] - 1e-9,
        "t <= 1.1x hloc": med_t <= 1.1 * ref[0],
        "r <= 1.1x hloc": s["median_rotation_error"] <= 1.1 * ref[1],
        "s/query <= 0.1x hloc": s["median_seconds"] <= 0.1 * ref[3],
    }


def run_scene(data: Path, rel: str, split: str, ref, config: MapConfig, loc_config: StructureConfig,
              learned_ref=None) -> dict:
    scene = load_scene(data, rel)
    t = time.perf_counter()
    run = evaluate(scene, split, "structure", config, localizer_config=loc_config, progress=False)
    s = run.summary
    relative = run.meta["preset"] == "relative"
    unit = 100.0 / run.meta["scene_scale"] if relative else 100.0     # % of scale or cm
    med_t = s["median_translation_error"] * unit
    row = {
        "scene": rel, "split": split, "queries": s["queries"], "failures": s["failures"],
        "median t": f"{med_t:.3g} {'%' if relative else 'cm'}", "median r (°)": round(s["median_rotation_error"], 4),
        "recall": f"{100 * headline_recall(s, relative):.0f} %",
        "s/query": round(s["median_seconds"], 3), "s/map": round(s.get("median_map_seconds", float("nan")), 2),
        "map MB": round(s.get("median_map_mb", float("nan")), 1),
        "query peak MB": round(s.get("peak_memory_mb") or float("nan")),
        "hloc t": ref[0], "hloc r": ref[1], "hloc s/q": ref[3], "hloc s/map": ref[4],
    }
    checks = {
        "recall >= hloc": headline_recall(s, relative) >= ref[2] - 1e-9,
        "t <= 1.1x hloc": med_t <= 1.1 * ref[0],
        "r <= 1.1x hloc": s["median_rotation_error"] <= 1.1 * ref[1],
        "s/query <= 0.25x hloc (or < 0.25 s)": s["median_seconds"] <= max(0.25 * ref[3], 0.25),
        "640x480 query < 0.25 s": scene.frames[0].camera.width * scene.frames[0].camera.height > 640 * 480
        or s["median_seconds"] < 0.25,
        "s/map <= 0.5x hloc": s.get("median_map_seconds", 0) <= 0.5 * ref[4],
    }
    if learned_ref is not None:
        checks = learned_checks(s, med_t, learned_ref)
        row.update({"hloc t": learned_ref[0], "hloc r": learned_ref[1], "hloc s/q": learned_ref[3]})
        row.pop("hloc s/map")
    row["pass"] = "yes" if all(checks.values()) else "NO: " + ", ".join(k for k, v in checks.items() if not v)
    doc = to_json(run.results, s, run.config, {}, run.meta)
    return {"row": row, "checks": checks, "evaluation": doc, "maps": run.maps,
            "wall_seconds": time.perf_counter() - t}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--scenes", nargs="*", help="substrings of scene paths to run (default: all)")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/out/core.json"))
    ap.add_argument("--features", default=MapConfig.features, help="local features (default: %(default)s)")
    ap.add_argument("--refine-loss", default=PoseConfig.refine_loss, help="PoseLib refinement loss")
    ap.add_argument("--map", nargs="*", default=[], metavar="KEY=VALUE",
                    help="other map options, e.g. point_descriptors=mean resize_max=1024")
    ap.add_argument("--reference", choices=["core", "learned"], default="core",
                    help="figures to check: issue 2's hloc (SIFT) or issue 7's hloc with ALIKED + LightGlue; "
                         "'learned' runs only the scenes that have that reference")
    args = ap.parse_args(argv)
    config = map_config(args.features, args.map)
    loc_config = StructureConfig(pose=PoseConfig(refine_loss=args.refine_loss))
    rows, out = [], []
    for rel, split, ref in SCENES:
        if args.scenes and not any(s in rel for s in args.scenes):
            continue
        learned_ref = LEARNED_REFERENCE.get(rel) if args.reference == "learned" else None
        if args.reference == "learned" and learned_ref is None:
            continue
        r = run_scene(args.data, rel, split, ref, config, loc_config, learned_ref)
        rows.append(r["row"])
        out.append(r)
        print(f"{rel}: {r['row']}", file=sys.stderr, flush=True)
    print(markdown_table(rows))
    write_results(args.json, {"config": config.to_dict(), "localizer": loc_config.to_dict()}, {"scenes": out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
