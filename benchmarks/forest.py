"""Scene coordinate regression forest (issue 5; Shotton et al. CVPR 2013, online leaf
adaptation after Cavallari et al. CVPR 2017) on a synthetic RGB-D room sequence.

    python benchmarks/forest.py                    # 320x240, 300 mapping frames, 50 queries
    python benchmarks/forest.py --size 128x96 --mapping 40 --queries 8 --trees 2   # a quick check
    python benchmarks/forest.py --adapt [--adapt-frames 0 10 25 50 100 200]

Default: trains the forests on room A's mapping frames (the two-loop sequence) and
localizes its queries with depth (3-point Kabsch RANSAC) and with colour only (PnP);
prints a Markdown table (recall 5 cm / 5°, median errors, ms per query, training
seconds) and writes JSON. Issue's figure: RGB-D queries >= 80 % within 5 cm / 5°, a
query <= 300 ms on 2 cores.

--adapt: the forest trained on room A keeps its splits; its leaves are emptied and
refilled from room B's mapping frames one by one (B: another seed and another room
size, so another trajectory, other wall positions and texture tiling; the photo set is
the same), and B's RGB-D queries are localized after N frames. Rows: A's untouched
forest on B, the refitted leaves after each N (with the mean time per adapted frame,
reading it included), and a reference forest trained on B's frames from scratch (the
same frames, the same options). Prints the table, writes JSON and a PNG of the curve
(accuracy against frames seen, the reference as a line, ms per frame on the right axis).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from vloc.datasets.synthetic import SyntheticConfig, generate_scene
from vloc.evaluation import markdown_table, query_result, summarize, thresholds_for, to_json, versions
from vloc.localizers import Query
from vloc.localizers.forest import ForestConfig, ForestLocalizer, build_forest_map
from vloc.maps.depth import read_depth
from vloc.scr import LeafAdapter, read_rgbd

FIGURE = "issue 5: RGB-D queries >= 80 % within 5 cm / 5°, <= 300 ms per query on 2 cores"
# options a stored map is answered with (ForestLocalizer.load(map, config)): no retraining for these
QUERY_OPTIONS = ("query_pixels", "rgb_query_pixels", "consensus_radius", "consensus_boost", "rgb_consensus",
                 "ransac", "pnp")


def room(args, seed: int, size: tuple[float, float, float], n_mapping: int):
    """Generate (or find) a synthetic RGB-D room under args.out."""
    w, h = args.size
    cfg = SyntheticConfig(name=f"room_{w}x{h}_{n_mapping}_s{seed}_{'x'.join(f'{v:g}' for v in size)}",
                          width=w, height=h, focal=args.focal or 250.0 * w / 320, n_mapping=n_mapping,
                          n_query=args.queries, seed=seed, room_size=size, layout=args.layout)
    t = time.perf_counter()
    scene = generate_scene(args.out / cfg.name, cfg)
    print(f"{cfg.name}: {time.perf_counter() - t:.1f} s (generated or found)", file=sys.stderr, flush=True)
    return scene


def forest_config(args) -> ForestConfig:
    given = {"trees": args.trees, "samples_per_frame": args.samples, "tree_depth": args.depth,
             "max_size": max(args.size), "seed": args.seed}
    return ForestConfig.from_dict({**ForestConfig().to_dict(), **{k: v for k, v in given.items() if v is not None}})


def train(scene, cfg: ForestConfig, args) -> tuple[ForestLocalizer, float]:
    """Build the map (or reuse one built from the same frames and config); returns the
    localizer and the training seconds (reading the frames included)."""
    frames = list(scene.split("official")[0].mapping)
    out = args.out / "maps" / (f"{scene.name}_{cfg.trees}t_{cfg.samples_per_frame}px_d{cfg.tree_depth}"
                               + ("" if cfg.rgb_forest else "_rgbd"))
    manifest = None
    if (out / "manifest.json").is_file():
        manifest = json.loads((out / "manifest.json").read_text())
        stored, wanted = manifest["config"]["map"], json.loads(json.dumps(cfg.to_dict()))
        same = ({k: v for k, v in stored.items() if k not in QUERY_OPTIONS}
                == {k: v for k, v in wanted.items() if k not in QUERY_OPTIONS}
                and manifest["source"].get("frames") == [f.name for f in frames])
        manifest = manifest if same else None
    if manifest is None:
        manifest = build_forest_map(frames, out, cfg, source={"scene": scene.name, "frames": [f.name for f in frames]},
                                    overwrite=True)
    timings = manifest["stats"]["timings"]
    args.train_cpu = round(timings.get("cpu_total", float("nan")), 1)
    return ForestLocalizer.load(out, cfg), sum(v for k, v in timings.items() if k not in ("total", "cpu_total"))


def localize_all(loc: ForestLocalizer, frames, with_depth: bool) -> list:
    results = []
    for f in frames:
        q = Query(f.name, image_path=f.image_path, camera=f.camera, depth=read_depth(f) if with_depth else None)
        t, cpu = time.perf_counter(), time.process_time()
        est = loc.localize(q)
        results.append(query_result(f.name, est, f.cam_from_world, time.perf_counter() - t))
        results[-1].details["cpu_seconds"] = time.process_time() - cpu
    return results


def row(label: str, results, scene, cpu: list[float] | None = None, **extra) -> tuple[dict, dict]:
    """A table row and the summary; CPU seconds per query from `cpu`, else from the results."""
    if cpu is None:
        cpu = [r.details.get("cpu_seconds", np.nan) for r in results]
    s = summarize(results, thresholds_for("indoor", scene.scale()))
    t, r = s["median_translation_error"], s["median_rotation_error"]
    return {"run": label, "queries": s["queries"], "failures": s["failures"],
            "recall 5cm/5°": f"{100 * s['recall']['5cm/5°']:.0f} %",
            "recall 2cm/2°": f"{100 * s['recall']['2cm/2°']:.0f} %",
            "median t (cm)": None if t is None or not np.isfinite(t) else round(100 * t, 2),
            "median r (°)": None if r is None or not np.isfinite(r) else round(r, 2),
            "ms/query": round(1000 * s["median_seconds"], 1),
            "CPU ms/query": round(1000 * float(np.median(cpu)), 1), **extra}, s


def write_json(path: Path, args, payload: dict) -> None:
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.node(), "cpu_count": os.cpu_count(),
            "args": {k: str(v) for k, v in vars(args).items()}, "figure": FIGURE, "versions": versions()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, **payload}, indent=1, default=str))
    print(f"JSON: {path}")


def run_default(args) -> int:
    cfg = forest_config(args)
    scene = room(args, args.seed, args.room, args.mapping)
    loc, train_s = train(scene, cfg, args)
    queries = [f for f in scene.split("official")[0].query if f.has_pose]
    rows, docs = [], {}
    for label, with_depth in (("RGB-D (Kabsch)", True), ("RGB only (PnP)", False)):
        results = localize_all(loc, queries, with_depth)
        r, s = row(label, results, scene, **{"train s": round(train_s, 1), "train CPU s": args.train_cpu})
        rows.append(r)
        docs[label] = to_json(results, s, {"map": cfg.to_dict()}, None,
                              {"scene": scene.name, "method": "forest", "split": "official", "preset": "indoor"})
    print(f"\n{scene.name}: {args.mapping} mapping frames, {len(queries)} queries. Figure: {FIGURE}\n")
    print(markdown_table(rows))
    write_json(args.json or args.out / f"{scene.name}.json", args,
               {"rows": rows, "map_stats": loc.manifest["stats"], "evaluations": docs})
    return 0


def run_adapt(args) -> int:
    cfg = forest_config(args)
    steps = sorted(set(args.adapt_frames))
    scene_a = room(args, args.seed, args.room, args.mapping)
    scene_b = room(args, args.adapt_seed, args.adapt_room, max(steps + [1]))
    loc, train_s = train(scene_a, cfg, args)
    fold = scene_b.split("official")[0]
    queries = [f for f in fold.query if f.has_pose]
    frames = [f for f in fold.mapping if f.has_pose]
    rows, curve = [], []
    r, _ = row("A's forest, A's leaves (no adaptation)", localize_all(loc, queries, True), scene_b, frames=0,
               **{"ms/frame": None, "CPU ms/frame": None})
    rows.append(r)
    print(r, file=sys.stderr, flush=True)
    # the reference: a forest trained on B's frames (the same frames the leaves are refitted on)
    ref_loc, ref_train_s = train(scene_b, replace(cfg, rgb_forest=False), args)
    ref, ref_s = row(f"B's own forest (trained on its {len(frames)} frames)", localize_all(ref_loc, queries, True),
                     scene_b, frames=len(frames), **{"ms/frame": None, "CPU ms/frame": None})
    print(ref, file=sys.stderr, flush=True)
    adapter = LeafAdapter(loc.forests["rgbd"], cfg)
    adapter.reset()
    frame_s: list[float] = []
    frame_cpu: list[float] = []
    for n in steps:
        while len(frame_s) < min(n, len(frames)):
            f = frames[len(frame_s)]
            t, cpu = time.perf_counter(), time.process_time()
            adapter.add_frame(read_rgbd(f, cfg.max_size, cfg.max_depth), f.cam_from_world)
            frame_s.append(time.perf_counter() - t)      # reading the frame included
            frame_cpu.append(time.process_time() - cpu)
        ms = round(1000 * float(np.mean(frame_s)), 1) if frame_s else None
        cpu_ms = round(1000 * float(np.mean(frame_cpu)), 1) if frame_cpu else None
        r, s = row(f"A's splits, leaves refitted on {len(frame_s)} B frames", localize_all(loc, queries, True),
                   scene_b, frames=len(frame_s), **{"ms/frame": ms, "CPU ms/frame": cpu_ms})
        rows.append(r)
        curve.append({"frames": len(frame_s), "recall_5cm_5deg": s["recall"]["5cm/5°"],
                      "recall_2cm_2deg": s["recall"]["2cm/2°"], "failures": s["failures"],
                      "median_translation_error": s["median_translation_error"], "ms_per_frame": ms,
                      "cpu_ms_per_frame": cpu_ms,
                      "ms_per_query": 1000 * s["median_seconds"]})
        print(r, file=sys.stderr, flush=True)
    rows.append(ref)
    print(f"\nforest trained on {scene_a.name} ({train_s:.0f} s, both forests), leaves refitted on "
          f"{scene_b.name} frame by frame; reference forest trained on B in {ref_train_s:.0f} s (RGB-D forest "
          f"only); {len(queries)} RGB-D queries of B\n")
    print(markdown_table(rows))
    if frame_s:
        print(f"\nper adapted frame (reading it included): mean {1000 * np.mean(frame_s):.0f} ms, "
              f"median {1000 * np.median(frame_s):.0f} ms, max {1000 * np.max(frame_s):.0f} ms; CPU: mean "
              f"{1000 * np.mean(frame_cpu):.0f} ms, max {1000 * np.max(frame_cpu):.0f} ms")
    png = args.out / f"adapt_{scene_a.name}_to_{scene_b.name}.png"
    plot_curve(curve, png, f"{scene_a.name}: leaves refitted on {scene_b.name}", ref_s["recall"]["5cm/5°"],
               len(frames))
    print(f"plot: {png}")
    write_json(args.json or args.out / f"adapt_{scene_a.name}_to_{scene_b.name}.json", args,
               {"rows": rows, "curve": curve, "train_seconds": train_s, "reference_train_seconds": ref_train_s,
                "reference_recall_5cm_5deg": ref_s["recall"]["5cm/5°"],
                "frame_seconds": [round(v, 4) for v in frame_s], "frame_cpu_seconds": [round(v, 4) for v in frame_cpu],
                "map_stats": loc.manifest["stats"],
                "reference_map_stats": ref_loc.manifest["stats"]})
    return 0


def plot_curve(curve: list[dict], path: Path, title: str, reference: float | None = None,
               reference_frames: int | None = None) -> None:
    """Accuracy against frames seen, the reference forest's as a dashed line, and the
    mean CPU time per adapted frame on the right axis (wall time depends on the load)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6.4, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    n = [c["frames"] for c in curve]
    ax.plot(n, [100 * c["recall_5cm_5deg"] for c in curve], "o-", label="leaves refitted (5 cm / 5°)")
    ax.plot(n, [100 * c["recall_2cm_2deg"] for c in curve], "s:", ms=4, label="leaves refitted (2 cm / 2°)")
    if reference is not None:
        ax.axhline(100 * reference, color="C2", ls="--", lw=1,
                   label=f"forest trained on B ({reference_frames} frames), 5 cm / 5°")
    ax.axhline(80, color="0.6", ls=":", lw=0.8)
    ax.set_xlabel("frames of the new scene added to the leaves")
    ax.set_ylabel("queries localized (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ms = [(c["frames"], c["cpu_ms_per_frame"]) for c in curve if c.get("cpu_ms_per_frame") is not None]
    if ms:
        ax2 = ax.twinx()
        ax2.plot(*zip(*ms), "x--", color="C3", lw=0.8, label="CPU ms per adapted frame (mean so far)")
        ax2.set_ylabel("CPU ms per adapted frame (one core)", color="C3")
        ax2.set_ylim(0, 1.2 * max(v for _, v in ms))
        ax2.legend(loc="lower right", fontsize=7)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def triple(text: str) -> tuple[float, float, float]:
    v = tuple(float(x) for x in text.split(","))
    if len(v) != 3:
        raise argparse.ArgumentTypeError("give x,y,height in metres")
    return v


def add_room_arguments(ap: argparse.ArgumentParser, room_name: str = "the room's",
                       trained: str = "the training's") -> None:
    """The synthetic RGB-D room's options, shared with benchmarks/scr.py (same scene)."""
    ap.add_argument("--size", type=size, default=(320, 240), help="image size WxH (default 320x240)")
    ap.add_argument("--focal", type=float, help="focal length in px (default 250 at 320 px wide, scaled)")
    ap.add_argument("--mapping", type=int, default=300, help=f"mapping frames of {room_name[:-2]}")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--room", type=triple, default=(10.0, 8.0, 3.0), help=f"{room_name[:-2]} size x,y,height (m)")
    ap.add_argument("--layout", default="path", choices=["path", "cover"])
    ap.add_argument("--seed", type=int, default=0, help=f"{room_name} seed (and {trained})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_room_arguments(ap, "room A's", "the forest's")
    ap.add_argument("--trees", type=int, help="default: the config's")
    ap.add_argument("--samples", type=int, help="training pixels per frame (default: the config's)")
    ap.add_argument("--depth", type=int, help="tree depth (default: the config's)")
    ap.add_argument("--adapt", action="store_true", help="refit the leaves on room B frame by frame")
    ap.add_argument("--adapt-seed", type=int, default=1)
    ap.add_argument("--adapt-room", type=triple, default=(9.0, 7.0, 2.8))
    ap.add_argument("--adapt-frames", type=int, nargs="+", default=[0, 10, 25, 50, 100, 200],
                    help="evaluate after this many frames of room B (B gets max of these mapping frames)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/forest"))
    ap.add_argument("--json", type=Path, help="default: <out>/<scene>.json")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return run_adapt(args) if args.adapt else run_default(args)


if __name__ == "__main__":
    sys.exit(main())
