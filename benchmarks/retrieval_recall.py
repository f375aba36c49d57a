"""Retrieval recall (issue 3): for each query, is a mapping image that observes at
least 30 % of the query's visible 3D points among the top 1 / top k retrieved?
Visibility from a structure map of all the scene's frames (built once per scene and
shared by the descriptors compared). Prints a table, writes JSON.

    python benchmarks/retrieval_recall.py [--descriptor vlad bow aliked-gem aliked-netvlad+head densevlad]
                                          [--k 5] [--whiten 0] [--threads N] [--scenes fountain ...]

Suffixes (aliked-* only): `+head` trains the projection head on each map, `+rot180`
also pools the image turned by 180 degrees. `--whiten` applies to aliked-* and
densevlad. ms/image is the query's descriptor time (network + pooling, dense SIFT +
VLAD, or local features + encoding), not counting decoding.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


import vloc
from vloc.evaluation import markdown_table
from vloc.evaluation.covisibility import retrieval_recall, visible_points
from vloc.localizers.retrieval import RetrievalMapConfig

from scenes import SCENES, default_data, load_scene, write_results


def map_config(spec: str, whiten: int) -> RetrievalMapConfig:
    """`name[+head][+rot180]` -> the map config."""
    name, *extra = spec.split("+")
    if set(extra) - {"head", "rot180"}:
        raise SystemExit(f"unknown descriptor suffix in {spec!r} (known: +head, +rot180)")
    if name.startswith("aliked-"):
        return RetrievalMapConfig(global_descriptor=name, head="head" in extra, rotate180="rot180" in extra,
                                  whiten=whiten)
    if extra:
        raise SystemExit(f"+head and +rot180 apply to aliked-* descriptors only, not {name}")
    if name == "densevlad":
        return RetrievalMapConfig(global_descriptor=name, whiten=whiten)
    return RetrievalMapConfig(global_descriptor=name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--descriptor", nargs="+", default=["vlad"])
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--whiten", type=int, default=0, help="PCA-whitening dims for aliked-*, densevlad (0: off)")
    ap.add_argument("--threads", type=int, help="torch threads (the network) and OpenCV threads (dense SIFT)")
    ap.add_argument("--scenes", nargs="*")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/out/retrieval_recall.json"))
    args = ap.parse_args(argv)
    if args.threads:
        import torch
        from vloc._libs import cv2
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    configs = {spec: map_config(spec, args.whiten) for spec in args.descriptor}
    rows, out = [], []
    for rel, split, _ in SCENES:
        if args.scenes and not any(s in rel for s in args.scenes):
            continue
        scene = load_scene(args.data, rel)
        with tempfile.TemporaryDirectory() as tmp:
            vloc.build_map(scene, Path(tmp) / "all", split="all", progress=False)
            vis = visible_points(Path(tmp) / "all")
            for spec, cfg in configs.items():
                t = time.perf_counter()
                r = retrieval_recall(scene, split, args.k, 0.3, cfg, progress=False, visibility=vis,
                                     work_dir=Path(tmp))
                rows.append({"scene": rel, "split": split, "descriptor": spec, "queries": r.queries,
                             "with a 30 % neighbour": r.answerable, "recall@1": f"{100 * r.recall1:.0f} %",
                             f"recall@{args.k}": f"{100 * r.recall:.0f} %", "target": ">= 95 %",
                             "ms/image": round(r.query_ms), "s/map": round(r.map_seconds, 1),
                             "seconds": round(time.perf_counter() - t, 1)})
                out.append({"scene": rel, "descriptor": spec, "config": cfg.to_dict(), **vars(r)})
                print(rows[-1], file=sys.stderr, flush=True)
    print(markdown_table(rows))
    write_results(args.json, {"descriptors": args.descriptor, "k": args.k, "whiten": args.whiten,
                              "threads": args.threads}, {"scenes": out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
