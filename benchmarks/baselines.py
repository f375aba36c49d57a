"""Method comparison on every benchmark scene (the seed's table): retrieval pose
baselines (top-1, interpolated) and, with --methods, any other method, side by side.
Prints a Markdown table and writes JSON.

    python benchmarks/baselines.py [--methods retrieval-top1 retrieval-interpolated structure]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vloc.evaluation import markdown_table, to_json
from vloc.evaluation.run import evaluate

from scenes import SCENES, default_data, load_scene, write_results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--methods", nargs="+", default=["retrieval-top1", "retrieval-interpolated"])
    ap.add_argument("--scenes", nargs="*", help="substrings of scene paths to run (default: all)")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/out/baselines.json"))
    args = ap.parse_args(argv)
    rows, out = [], []
    for rel, split, _ in SCENES:
        if args.scenes and not any(s in rel for s in args.scenes):
            continue
        scene = load_scene(args.data, rel)
        for method in args.methods:
            t = time.perf_counter()
            run = evaluate(scene, split, method, progress=False)
            s = run.summary
            relative = run.meta["preset"] == "relative"
            unit, sym = (100.0 / run.meta["scene_scale"], "%") if relative else (100.0, "cm")
            key = "1%/5°" if relative else "5cm/5°"
            rows.append({"scene": rel, "split": split, "method": method, "queries": s["queries"],
                         "failures": s["failures"],
                         "median t": f"{s['median_translation_error'] * unit:.3g} {sym}",
                         "median r (°)": round(s["median_rotation_error"], 3),
                         "recall 5cm/5° (1%/5°)": f"{100 * s['recall'].get(key, 0):.0f} %",
                         "s/query": round(s["median_seconds"], 3),
                         "s/map": round(s.get("median_map_seconds", float("nan")), 2)})
            out.append({"scene": rel, "method": method, "wall_seconds": time.perf_counter() - t,
                        "evaluation": to_json(run.results, s, run.config, {}, run.meta), "maps": run.maps})
            print(f"{rel} {method}: {rows[-1]}", file=sys.stderr, flush=True)
    print(markdown_table(rows))
    write_results(args.json, {"methods": args.methods}, {"runs": out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
