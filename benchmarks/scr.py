"""CNN scene coordinate regression (issue 5, parts 3-5) on a synthetic RGB-D room sequence:
`scr` (frozen ALIKED encoder, head trained with the coordinate loss on a pixel buffer)
and `scr-dsac` (the same head, then DSAC fine-tuning).

    python benchmarks/scr.py                       # 320x240, 300 mapping frames, 50 queries
    python benchmarks/scr.py --size 128x96 --mapping 40 --queries 8 --steps 300 --dsac-steps 40   # a quick check
    python benchmarks/scr.py --selection-study [--dsac-steps 300]

Default: the encoder runs once over room A's mapping frames (the buffer); three heads
are trained on it: `scr` (`--steps` coordinate steps), `scr-dsac` (the same head plus
`--dsac-steps` of DSAC) and `scr, same compute` (coordinate steps only, as many as fit
in scr-dsac's training seconds, one cosine schedule). Each localizes the queries with
depth (3-point Kabsch RANSAC) and colour only (PnP, PoseLib). Prints a Markdown table
(recall 5 cm / 5°, median errors, ms per query, mapping seconds: buffer + training) and
writes JSON. Issue's figures: scr-dsac RGB-D >= 90 % within 5 cm / 5°; DSAC lowers the
median error against the same compute of coordinate training; mapping <= 10 min;
a query <= 300 ms on 2 cores.

--selection-study: one coordinate-trained head, fine-tuned with each selection
(argmax, soft-argmax, probabilistic) for the same steps, images and seed; a row per
selection plus the head without fine-tuning.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from forest import localize_all, room, row, size, triple, write_json

from vloc.evaluation import markdown_table, to_json
from vloc.localizers.scr import ScrLocalizer
from vloc.scr import cnn
from vloc.scr.config import SELECTIONS, DsacConfig, ScrConfig
from vloc.scr.dsac import fine_tune

FIGURE = ("issue 5: CNN + DSAC >= 90 % of RGB-D queries within 5 cm / 5°; DSAC lowers the median error "
          "against coordinate training of the same compute; mapping <= 10 min; <= 300 ms per query on 2 cores")


def scr_config(args) -> ScrConfig:
    given = {"steps": args.steps, "buffer_passes": args.passes, "prototypes": args.prototypes,
             "encoder": args.encoder, "max_size": max(args.size), "seed": args.seed}
    base = ScrConfig().to_dict()
    dsac = {**base["dsac"], **{k: v for k, v in {"steps": args.dsac_steps, "images": args.dsac_images}.items()
                               if v is not None}}
    ransac = {**base["ransac"], **({"min_inliers": args.min_inliers} if args.min_inliers else {})}
    pnp = {**base["pnp"], **({"min_inliers": args.min_inliers} if args.min_inliers else {})}
    return ScrConfig.from_dict({**base, **{k: v for k, v in given.items() if v is not None},
                                "dsac": dsac, "ransac": ransac, "pnp": pnp})


def evaluate(label: str, loc: ScrLocalizer, queries, scene, extra: dict) -> tuple[list[dict], dict]:
    """Rows for RGB-D and colour-only queries, and their evaluations (per query: errors,
    inliers, reasons) as vloc's JSON."""
    rows, docs = [], {}
    for mode, with_depth in (("RGB-D (Kabsch)", True), ("RGB (PnP)", False)):
        results = localize_all(loc, queries, with_depth)
        r, s = row(f"{label}, {mode}", results, scene, **extra)
        rows.append(r)
        docs[f"{label}, {mode}"] = to_json(results, s, {"map": loc.config.to_dict()}, None,
                                           {"scene": scene.name, "method": loc.manifest["method"],
                                            "split": "official", "preset": "indoor"})
        print(r, file=sys.stderr, flush=True)
    return rows, docs


def run_default(args) -> int:
    cfg = scr_config(args)
    scene = room(args, args.seed, args.room, args.mapping)
    fold = scene.split("official")[0]
    queries = [f for f in fold.query if f.has_pose]
    t = time.perf_counter()
    buf = cnn.build_buffer(list(fold.mapping), cfg)
    buffer_s = time.perf_counter() - t
    head, hist = cnn.train_head(buf, cfg)
    tuned = copy.deepcopy(head)
    dsac = fine_tune(tuned, buf, cfg)
    per_step = hist["seconds"] / max(1, cfg.steps)
    same = replace(cfg, steps=cfg.steps + round(dsac["seconds"] / per_step))
    head_same, hist_same = cnn.train_head(buf, same)
    variants = [("scr", head, hist["seconds"], cfg.steps),
                ("scr, same compute", head_same, hist_same["seconds"], same.steps),
                ("scr-dsac", tuned, hist["seconds"] + dsac["seconds"], cfg.steps)]
    rows, docs = [], {}
    for label, h, train_s, steps in variants:
        r, d = evaluate(label, ScrLocalizer.from_head(h, cfg, "scr-dsac" if "dsac" in label else "scr"), queries,
                        scene, {"coordinate steps": steps, "mapping s": round(buffer_s + train_s, 1)})
        rows += r
        docs.update(d)
    print(f"\n{scene.name}: {args.mapping} mapping frames, {len(queries)} queries, buffer {len(buf)} cells "
          f"({buffer_s:.0f} s), DSAC {cfg.dsac.steps} steps ({dsac['seconds']:.0f} s). Figure: {FIGURE}\n")
    print(markdown_table(rows))
    write_json(args.json or args.out / f"{scene.name}_scr.json", args,
               {"config": cfg.to_dict(), "rows": rows, "evaluations": docs, "buffer_seconds": buffer_s,
                "history": {"coordinates": hist, "dsac": dsac, "same_compute": hist_same}})
    return 0


def run_selection_study(args) -> int:
    cfg = scr_config(args)
    scene = room(args, args.seed, args.room, args.mapping)
    fold = scene.split("official")[0]
    queries = [f for f in fold.query if f.has_pose]
    buf = cnn.build_buffer(list(fold.mapping), cfg)
    head, hist = cnn.train_head(buf, cfg)
    rows, docs = evaluate("no fine-tuning", ScrLocalizer.from_head(head, cfg), queries, scene, {"DSAC s": 0})
    histories = {}
    for selection in SELECTIONS:
        tuned = copy.deepcopy(head)
        histories[selection] = fine_tune(tuned, buf, cfg, selection=selection)
        r, d = evaluate(selection, ScrLocalizer.from_head(tuned, cfg, "scr-dsac"), queries, scene,
                        {"DSAC s": round(histories[selection]["seconds"], 1)})
        rows += r
        docs.update(d)
    print(f"\n{scene.name}: selection study, DSAC {cfg.dsac.steps} steps x {cfg.dsac.images} images from the same "
          f"head ({cfg.steps} coordinate steps, {hist['seconds']:.0f} s)\n")
    print(markdown_table(rows))
    write_json(args.json or args.out / f"{scene.name}_selection.json", args,
               {"config": cfg.to_dict(), "rows": rows, "evaluations": docs, "histories": histories})
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=size, default=(320, 240), help="image size WxH (default 320x240)")
    ap.add_argument("--focal", type=float, help="focal length in px (default 250 at 320 px wide, scaled)")
    ap.add_argument("--mapping", type=int, default=300, help="mapping frames")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--room", type=triple, default=(10.0, 8.0, 3.0), help="room size x,y,height (m)")
    ap.add_argument("--layout", default="path", choices=["path", "cover"])
    ap.add_argument("--seed", type=int, default=0, help="the room's seed (and the training's)")
    ap.add_argument("--encoder", help="default: the config's")
    ap.add_argument("--steps", type=int, help="coordinate steps (default: the config's)")
    ap.add_argument("--passes", type=int, help="buffer passes (default: the config's)")
    ap.add_argument("--prototypes", type=int, help="prototypes of the head (default: the config's)")
    ap.add_argument("--dsac-steps", type=int, help=f"DSAC steps (default {DsacConfig().steps})")
    ap.add_argument("--dsac-images", type=int, help=f"images per DSAC step (default {DsacConfig().images})")
    ap.add_argument("--min-inliers", type=int, help="RANSAC and PnP inliers needed (default: the config's)")
    ap.add_argument("--selection-study", action="store_true", help="argmax vs soft-argmax vs probabilistic")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/scr"))
    ap.add_argument("--json", type=Path, help="default: <out>/<scene>_scr.json or _selection.json")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    return run_selection_study(args) if args.selection_study else run_default(args)


if __name__ == "__main__":
    sys.exit(main())
