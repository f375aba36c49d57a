"""Scale benchmark (issue 3): query time and memory against map size on the synthetic
city, for direct 2D-3D matching (structure), hierarchical localization and tiles +
a GPS-like prior. The city grows with the number of mapping images at a constant
capture density (10k images <-> a 1 km x 1 km street grid), so tiles hold about the
same content at every size. Prints a Markdown table, writes JSON and a plot.

    python benchmarks/scale.py --sizes 1000 10000 [100000] [--methods structure hierarchical tiled]
    python benchmarks/scale.py --sizes          # table and plot of every run in the work folder
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import vloc
from vloc.datasets.synthetic.city_scene import CityConfig, generate_city
from vloc.evaluation import markdown_table, to_json
from vloc.evaluation.run import evaluate, peak_rss_mb, reset_peak_rss
from vloc.localizers.registry import get_method

from scenes import write_results

KM_PER_10K = 1.0               # side of the street grid for 10,000 mapping images


def city_config(n: int, queries: int) -> CityConfig:
    return CityConfig(name=f"city_{n}", size_m=1000.0 * KM_PER_10K * math.sqrt(n / 10_000),
                      n_mapping=n, n_query=queries, seed=0)


def map_config(method: str, args):
    common = {"features": args.features, "resize_max": 320, "max_keypoints": args.max_keypoints,
              "num_pairs": args.num_pairs}
    cfg = get_method(method).config_type()
    extra = {"tile_size": args.tile_size} if method == "tiled" else {}
    return type(cfg).from_dict({k: v for k, v in {**common, **extra}.items() if k in cfg.to_dict()})


def run_one(scene, n: int, method: str, args, work: Path) -> dict:
    map_dir = work / f"{method}-{n}"
    cfg = map_config(method, args)
    structure = work / f"structure-{n}"
    if not map_dir.exists() and method == "hierarchical" and (structure / "manifest.json").exists():
        # the direct map of this size is its structure part (linked, not built again)
        from vloc.localizers.hierarchical import build_hierarchical_map
        fold = scene.split("official")[0]
        build_hierarchical_map(list(fold.mapping), map_dir, cfg, structure_map=structure, progress=True)
    elif not map_dir.exists():
        vloc.build_map(scene, map_dir, cfg, method=method, split="official", progress=True)
    manifest = json.loads((map_dir / "manifest.json").read_text())
    build_s = manifest["stats"]["timings"]["total"]
    map_mb = sum(f["bytes"] for f in manifest["files"].values()) / 2**20
    reset_peak_rss()
    t = time.perf_counter()
    get_method(method).load(map_dir)
    load_s, load_mb = time.perf_counter() - t, peak_rss_mb()
    run = evaluate(scene, "official", method, cfg, map_dir=map_dir, preset="outdoor",
                   prior_radius=args.prior_radius if method == "tiled" else None,
                   prior_noise=args.prior_noise, progress=True)
    s = run.summary
    secs = sorted(r.seconds for r in run.results)
    tiles_mb = [r.details["query_tile_mb"] for r in run.results if "query_tile_mb" in r.details]
    cache_mb = [r.details["loaded_tile_mb"] for r in run.results if "loaded_tile_mb" in r.details]
    row = {"images": n, "method": method, "queries": s["queries"], "failures": s["failures"],
           "median t (m)": round(s["median_translation_error"], 3),
           "median r (°)": round(s["median_rotation_error"], 2),
           "recall 50cm/5°": f"{100 * s['recall'].get('50cm/5°', 0):.0f} %",
           "median s/query": round(s["median_seconds"], 3),
           "p90 s/query": round(secs[int(0.9 * (len(secs) - 1))], 3),
           "peak MB/query": round(s.get("peak_memory_mb") or float("nan")),
           "map load MB": round(load_mb), "map load s": round(load_s, 1),
           "query tiles MB (max)": round(max(tiles_mb), 1) if tiles_mb else None,
           "tile cache MB (end)": round(cache_mb[-1], 1) if cache_mb else None,
           "map MB": round(map_mb), "build s": round(build_s)}
    print(json.dumps(row), file=sys.stderr, flush=True)
    return {"row": row, "stats": manifest["stats"],
            "evaluation": to_json(run.results, s, run.config, {}, run.meta)}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for method in sorted({r["method"] for r in rows}):
        rs = sorted((r for r in rows if r["method"] == method), key=lambda r: r["images"])
        x = [r["images"] for r in rs]
        axes[0].plot(x, [r["median s/query"] for r in rs], "o-", label=method)
        axes[1].plot(x, [r["peak MB/query"] for r in rs], "o-", label=method)
        if method == "tiled":
            axes[1].plot(x, [r["query tiles MB (max)"] for r in rs], "o--", label="tiled: a query's tiles (max)")
    for ax, title in zip(axes, ("median query time (s)", "peak memory per query (MB, process with its map)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("mapping images")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("vloc on the synthetic city (2 cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000],
                    help="city sizes to run (none: only report what the work folder holds)")
    ap.add_argument("--methods", nargs="+", default=["structure", "hierarchical", "tiled"])
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--features", default="sift")
    ap.add_argument("--max-keypoints", type=int, default=1024)
    ap.add_argument("--num-pairs", type=int, default=8)
    ap.add_argument("--tile-size", type=float, default=150.0)
    ap.add_argument("--prior-radius", type=float, default=20.0)
    ap.add_argument("--prior-noise", type=float, default=5.0, help="GPS-like noise, metres per axis")
    ap.add_argument("--work", type=Path, default=Path("benchmarks/out/scale"))
    ap.add_argument("--json", type=Path, default=Path("benchmarks/out/scale.json"))
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)     # one size and method, result here
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.child:
        scene = generate_city(args.work / f"city-{args.sizes[0]}", city_config(args.sizes[0], args.queries))
        args.child.write_text(json.dumps(run_one(scene, args.sizes[0], args.methods[0], args, args.work),
                                         default=str))
        return 0
    results = []
    for n in args.sizes:
        t = time.perf_counter()
        generate_city(args.work / f"city-{n}", city_config(n, args.queries), progress=True)
        print(f"city {n}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        for method in args.methods:
            # each in a fresh process: its memory is its own, not what an earlier map left
            out = args.work / f"result-{method}-{n}.json"
            cmd = [sys.executable, __file__, "--child", str(out), "--sizes", str(n), "--methods", method]
            for key in ("queries", "features", "max_keypoints", "num_pairs", "tile_size", "prior_radius",
                        "prior_noise", "work"):
                cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
            subprocess.run(cmd, check=True)
            results.append(json.loads(out.read_text()))
    # the table and plot cover every size and method measured in this work folder (runs of
    # earlier invocations included: a 100k run takes hours and is done on its own)
    known = {(r["row"]["images"], r["row"]["method"]) for r in results}
    for path in sorted(args.work.glob("result-*-*.json")):
        r = json.loads(path.read_text())
        if (r["row"]["images"], r["row"]["method"]) not in known:
            results.append(r)
    rows = sorted((r["row"] for r in results), key=lambda r: (r["images"], r["method"]))
    print(markdown_table(rows))
    plot(rows, args.work / "scale.png")
    write_results(args.json, {"sizes": args.sizes, "methods": args.methods,
                              "args": {k: str(v) for k, v in vars(args).items()}},
                  {"runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
