"""Extraction cost per image of every local-feature extractor (issue 7): CPU time
(process time, all threads) and wall time per image, median over N rendered images
of the synthetic room, with 1 and 2 threads (torch, OpenCV, OpenMP), and the peak
memory of one extraction, at 640x480 and 1600x1200. Prints a table and writes JSON.

Each (extractor, resolution, threads) runs in its own process: the peak resident
memory (VmHWM) is that extractor's alone. "peak MB" is the process's peak over the
extractions (one warm-up image, then the timed ones); "+MB" is that peak minus the
resident memory once the libraries were imported and the network built, before any
image: the memory one image's extraction needs beyond the loaded model.

SuperPoint has no weights here: it runs with a seeded random state dict of the right
architecture (same cost, meaningless keypoints). Its `tile_size` (1024) bounds its
memory at 1600 px.

    python benchmarks/extractors.py [--extractors sift ...] [--sizes 640x480 1600x1200] [--n 5] [--threads 1 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

EXTRACTORS = ("sift", "rootsift", "colmap-sift", "aliked", "disk", "xfeat", "superpoint")


def render_images(out: Path, size: tuple[int, int], n: int) -> list[Path]:
    """n frames of the synthetic room at `size` (the focal scales with the width), cached."""
    from vloc._libs import cv2
    from vloc.datasets import synthetic as S
    w, h = size
    folder = out / "images" / f"{w}x{h}"
    paths = [folder / f"{i:02d}.png" for i in range(n)]
    if all(p.is_file() for p in paths):
        return paths
    cfg = S.SyntheticConfig(width=w, height=h, focal=500.0 * w / 640, n_mapping=max(n, 8), n_query=0, seed=5)
    world = S.build_world(cfg)
    mapping, _ = S.scene_poses(cfg, world)
    folder.mkdir(parents=True, exist_ok=True)
    step = len(mapping) // n
    for i, p in enumerate(paths):
        rgb, _ = S.render(world, cfg.camera(), mapping[i * step])
        cv2.imwrite(str(p), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return paths


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def child(args) -> None:
    """One (extractor, size, threads) measurement; prints a JSON line."""
    import torch
    threads = args.threads[0]
    torch.set_num_threads(threads)
    from vloc._libs import cv2
    cv2.setNumThreads(threads)
    from vloc.features import make_extractor
    from vloc.imageio import read_image
    images = [read_image(Path(p), grayscale=True)[0] for p in args.images]
    name, _, opts = args.extractor.partition(":")
    kw = {"max_keypoints": args.max_keypoints}
    for kv in filter(None, opts.split(",")):
        k, _, v = kv.partition("=")
        kw[k] = int(v) if v.lstrip("-").isdigit() else float(v) if v.replace(".", "", 1).isdigit() else v
    if name == "superpoint":
        from vloc.features.superpoint import _build_network
        torch.manual_seed(0)
        wpath = Path(args.work) / "superpoint_random.pth"
        if not wpath.is_file():
            torch.save(_build_network(False).state_dict(), wpath)
        kw["weights"] = str(wpath)
    ex = make_extractor(name, **kw)
    if callable(getattr(type(ex), "_net", None)):    # kornia networks are built on first use
        ex._net()
    size = images[0].shape[::-1]
    base = _rss_mb("VmRSS")                           # libraries and the network loaded
    with open("/proc/self/clear_refs", "w") as f:     # reset VmHWM
        f.write("5")
    ex.extract(images[0], size)                       # warm-up (first-call costs), not timed
    cpu, wall, counts = [], [], []
    for img in images:
        c, t = time.process_time(), time.perf_counter()
        feats = ex.extract(img, size)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
        counts.append(len(feats))
    peak = _rss_mb("VmHWM")
    print(json.dumps({"cpu_s": cpu, "wall_s": wall, "keypoints": counts, "base_mb": base, "peak_mb": peak}))


def measure(extractor: str, paths: list[Path], threads: int, max_keypoints: int, work: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    cmd = [sys.executable, __file__, "--child", "--extractor", extractor, "--threads", str(threads),
           "--max-keypoints", str(max_keypoints), "--work", str(work), "--images", *map(str, paths)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    r = json.loads(p.stdout.strip().splitlines()[-1])
    return {"cpu_s": float(np.median(r["cpu_s"])), "wall_s": float(np.median(r["wall_s"])),
            "keypoints": int(np.median(r["keypoints"])), "peak_mb": r["peak_mb"],
            "extra_mb": r["peak_mb"] - r["base_mb"], "runs": r}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extractors", nargs="+", default=list(EXTRACTORS),
                    help="registry names, optionally with options: superpoint:tile_size=0")
    ap.add_argument("--sizes", nargs="+", default=["640x480", "1600x1200"])
    ap.add_argument("--n", type=int, nargs="+", default=[5, 3], help="images per size (one value per size)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--max-keypoints", type=int, default=4096)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/extractors"))
    ap.add_argument("--json", type=Path, default=None, help="default: OUT/extractors.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--extractor", help=argparse.SUPPRESS)
    ap.add_argument("--images", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return 0
    from vloc.evaluation import markdown_table, versions
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    ns = (args.n * len(sizes))[:len(sizes)] if len(args.n) == 1 else args.n
    args.out.mkdir(parents=True, exist_ok=True)
    images = {s: render_images(args.out, s, n) for s, n in zip(sizes, ns)}
    rows, results = [], {}
    load0 = os.getloadavg()
    for name in args.extractors:
        for s in sizes:
            for th in args.threads:
                t = time.perf_counter()
                r = measure(name, images[s], th, args.max_keypoints, args.out)
                key = f"{name}@{s[0]}x{s[1]}@{th}"
                results[key] = {"extractor": name, "size": list(s), "threads": th, "images": len(images[s]), **r}
                row = {"extractor": name, "size": f"{s[0]}x{s[1]}", "threads": th}
                if "error" in r:
                    row["error"] = r["error"]
                else:
                    row.update({"CPU s/image": round(r["cpu_s"], 3), "wall s/image": round(r["wall_s"], 3),
                                "keypoints": r["keypoints"], "peak MB": round(r["peak_mb"]),
                                "+MB": round(r["extra_mb"])})
                rows.append(row)
                print(f"{key}: {row} ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    print(markdown_table(rows))
    doc = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.node(),
                    "cpu_count": os.cpu_count(), "load_before": load0, "load_after": os.getloadavg(),
                    "max_keypoints": args.max_keypoints, "argv": sys.argv[1:], "versions": versions(),
                    "notes": "superpoint: random weights (none available), same cost as trained ones"},
           "results": results}
    js = args.json or args.out / "extractors.json"
    js.write_text(json.dumps(doc, indent=1))
    print(f"JSON: {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
