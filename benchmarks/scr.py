"""CNN scene coordinate regression (issue 5, parts 3-5) on a synthetic RGB-D room sequence:
`scr` (frozen ALIKED encoder, head trained with the coordinate loss on a pixel buffer)
and `scr-dsac` (the same head, then DSAC fine-tuning).

    python benchmarks/scr.py                       # 320x240, 300 mapping frames, 50 queries
    python benchmarks/scr.py --size 128x96 --mapping 40 --queries 8 --steps 300 --dsac-steps 40   # a quick check
    python benchmarks/scr.py --selection-study [--dsac-steps 150]
    python benchmarks/scr.py --mapping-input rgb   # mapping frames without depth: reprojection loss, P3P DSAC
    python benchmarks/scr.py --depth-noise kinect  # mapping depth with Kinect v1 noise and disparity steps
    python benchmarks/scr.py --depth-noise shift:2 --dsac-minimal p3p   # depth misregistered by 2 px
    python benchmarks/scr.py --depth-noise scale:1.03                    # depth 3 % too far

The room is the one of benchmarks/forest.py (10 x 8 x 3 m, 320x240, 300 mapping frames on
the two-loop path, 50 queries, seed 0), generated under --out or found there.

Default: the encoder runs once over the mapping frames (the buffer); three heads are
trained on it: `scr` (`--steps` coordinate steps), `scr-dsac` (that head plus
`--dsac-steps` of DSAC) and `scr, same compute` (coordinate steps only, as many as fit
in scr-dsac's training compute, one cosine schedule). "Compute" is the process's CPU
time: on the shared machine other jobs' load changes wall time from run to run (wall
seconds are reported too). Each head localizes the queries with depth (3-point Kabsch
RANSAC) and colour only (PnP, PoseLib LO-RANSAC). Prints a Markdown table (recall
5 cm / 5°, median errors, wall and CPU ms per query, mapping seconds: buffer +
candidates + training), DSAC's own objective on its training images before and after
fine-tuning, a paired comparison of scr-dsac against the same compute
(per query), the machine's load, and writes JSON and a PNG of the error CDFs (RGB-D).
Issue's figures: scr-dsac RGB-D >= 90 % within 5 cm / 5°; DSAC lowers the median
error against the same compute of coordinate training; mapping <= 10 min; a query
<= 300 ms on 2 cores.

--selection-study: one coordinate-trained head, fine-tuned with each selection
(argmax, soft-argmax, probabilistic) for the same steps, images, hypotheses and seed;
a row per selection (and query mode) plus the head without fine-tuning.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")     # before torch: idle OpenMP threads sleep

import argparse  # noqa: E402
import copy  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from forest import add_room_arguments, room, row, write_json  # noqa: E402

from vloc.evaluation import markdown_table, query_result, thresholds_for, to_json  # noqa: E402
from vloc.evaluation.report import plot_error_cdfs  # noqa: E402
from vloc.localizers import Query  # noqa: E402
from vloc.localizers.scr import ScrLocalizer  # noqa: E402
from vloc.maps.depth import read_depth  # noqa: E402
from vloc.scr import cnn  # noqa: E402
from vloc.scr.config import SELECTIONS, DsacConfig, ScrConfig  # noqa: E402
from vloc.scr.dsac import fine_tune, training_objective  # noqa: E402

FIGURE = ("issue 5: CNN + DSAC >= 90 % of RGB-D queries within 5 cm / 5°; DSAC lowers the median error "
          "against coordinate training of the same compute; mapping <= 10 min; <= 300 ms per query on 2 cores")
MODES = (("RGB-D (Kabsch)", True), ("RGB (PnP)", False))


def scr_config(args) -> ScrConfig:
    given = {"steps": args.steps, "buffer_passes": args.passes, "prototypes": args.prototypes,
             "encoder": args.encoder, "max_size": max(args.size), "seed": args.seed}
    base = ScrConfig().to_dict()
    given_dsac = {"steps": args.dsac_steps, "images": args.dsac_images, "lr": args.dsac_lr,
                  "temperature_lr": args.dsac_temperature_lr, "optimizer": args.dsac_optimizer,
                  "alpha": args.alpha, "hypotheses": args.dsac_hypotheses, "cells": args.dsac_cells,
                  "exclude_frames": args.dsac_exclude, "minimal": args.dsac_minimal,
                  "coordinate_weight": args.dsac_coordinate_weight}
    dsac = {**base["dsac"], **{k: v for k, v in given_dsac.items() if v is not None}}
    ransac = {**base["ransac"], **({"min_inliers": args.min_inliers} if args.min_inliers else {})}
    pnp = {**base["pnp"], **({"min_inliers": args.min_inliers} if args.min_inliers else {})}
    return ScrConfig.from_dict({**base, **{k: v for k, v in given.items() if v is not None},
                                "dsac": dsac, "ransac": ransac, "pnp": pnp})


class Clock:
    """Wall and process CPU seconds since creation."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


# Kinect v1 depth (Khoshelham & Elberink, Sensors 2012): z = f b / d with f = 580 px and
# b = 0.075 m, the disparity d measured in steps of 1/8 px; its random error (0.062 px)
# gives their sigma_z = 1.425e-3 z^2 (m); the steps are z^2 / (8 f b) deep (2.6 cm at 3 m)
KINECT_FB = 580.0 * 0.075
KINECT_DISPARITY_SIGMA = 1.425e-3 * KINECT_FB


def kinect_depth(depth: np.ndarray, rng) -> np.ndarray:
    """Metric depth (0 = none) as a Kinect v1 would measure it: disparity noise, then
    1/8 px disparity steps."""
    valid = depth > 0
    d = KINECT_FB / np.where(valid, depth, 1.0) + rng.normal(0.0, KINECT_DISPARITY_SIGMA, depth.shape)
    d = np.round(d * 8) / 8
    return np.where(valid & (d > 0), KINECT_FB / np.maximum(d, 1e-6), 0.0)


def shifted_depth(depth: np.ndarray, pixels: int) -> np.ndarray:
    """The depth map moved `pixels` to the right (0 = none where it leaves the image): a
    depth camera registered to the colour camera with that error, as 7-Scenes' depth is
    not registered to its colour images."""
    out = np.zeros_like(depth)
    if pixels >= 0:
        out[:, pixels:] = depth[:, :depth.shape[1] - pixels]
    else:
        out[:, :pixels] = depth[:, -pixels:]
    return out


def depth_error(spec: str):
    """--depth-noise as a function (metric depth, rng) -> metric depth: `kinect`,
    `shift:PX` (misregistered by PX pixels) or `scale:S` (every depth times S, a
    miscalibrated depth scale)."""
    kind, _, amount = spec.partition(":")
    try:
        if kind == "kinect" and not amount:
            return kinect_depth
        if kind == "shift":
            pixels = int(amount)
            return lambda z, rng: shifted_depth(z, pixels)
        if kind == "scale" and float(amount) > 0:
            return lambda z, rng: z * float(amount)
    except ValueError:
        pass
    raise SystemExit(f"--depth-noise must be none, kinect, shift:PX or scale:S, got {spec!r}")


def noisy_depth_frames(frames: list, out: Path, seed: int, spec: str = "kinect") -> list:
    """The frames with their depth replaced by copies with the error `spec` (see
    `depth_error`; 16-bit mm PNGs under `out`, made once per frame, seeded by the
    frame's position)."""
    import cv2

    from vloc.datasets.synthetic.generate import DEPTH_SCALE, depth_to_png
    error = depth_error(spec)
    out.mkdir(parents=True, exist_ok=True)
    noisy = []
    for i, f in enumerate(frames):
        path = out / f"{Path(f.name).stem}.png"
        if not path.is_file():
            z = error(read_depth(f).astype(np.float64), np.random.default_rng([seed, i]))
            tmp = path.with_suffix(".tmp.png")
            cv2.imwrite(str(tmp), depth_to_png(z))
            tmp.replace(path)
        noisy.append(replace(f, depth_path=path, depth_scale=DEPTH_SCALE))
    return noisy


def mapping_frames(fold, args, scene_name: str = "") -> list:
    """The mapping frames; with --mapping-input rgb without their depth (the head is
    then trained with the reprojection loss, DSAC with P3P hypotheses); with
    --depth-noise with the depth error it names."""
    frames = list(fold.mapping)
    if args.mapping_input == "rgb":
        return [replace(f, depth_path=None) for f in frames]
    if args.depth_noise != "none":
        return noisy_depth_frames(frames, args.out / f"{noise_tag(args)}_depth" / scene_name, args.seed,
                                  args.depth_noise)
    return frames


def noise_tag(args) -> str:
    return args.depth_noise.replace(":", "")


def suffix(args) -> str:
    return (("" if args.mapping_input == "rgbd" else "_rgbmap")
            + ("" if args.depth_noise == "none" else "_" + noise_tag(args))
            + ("" if args.dsac_minimal in (None, "auto") else "_" + args.dsac_minimal))


def load() -> str:
    return "load average " + ", ".join(f"{v:.1f}" for v in os.getloadavg()) + f" on {os.cpu_count()} cores"


def localize_all(loc: ScrLocalizer, frames, with_depth: bool) -> tuple[list, list[float]]:
    """Query results (wall seconds each, the image and depth read from disk included)
    and the process CPU seconds of each query."""
    results, cpu = [], []
    for f in frames:
        q = Query(f.name, image_path=f.image_path, camera=f.camera, depth=read_depth(f) if with_depth else None)
        clock = Clock()
        est = loc.localize(q)
        wall, c = clock.read()
        results.append(query_result(f.name, est, f.cam_from_world, wall))
        cpu.append(c)
    return results, cpu


def evaluate(label: str, loc: ScrLocalizer, queries, scene, extra: dict) -> tuple[list[dict], dict, dict]:
    """Rows for RGB-D and colour-only queries, their evaluations (per query: errors,
    inliers, reasons) as vloc's JSON, and the results per mode."""
    rows, docs, results = [], {}, {}
    for mode, with_depth in MODES:
        res, cpu = localize_all(loc, queries, with_depth)
        r, s = row(f"{label}, {mode}", res, scene, cpu, **extra)
        rows.append(r)
        results[mode] = res
        docs[f"{label}, {mode}"] = {**to_json(res, s, {"map": loc.config.to_dict()}, None,
                                              {"scene": scene.name, "method": loc.manifest["method"],
                                               "split": "official", "preset": "indoor"}),
                                    "cpu_seconds": cpu}
        print(r, file=sys.stderr, flush=True)
    return rows, docs, results


def paired(a, b) -> dict:
    """Per query: how often `a`'s translation error is below `b`'s, and the median of
    the differences (cm); failures count as infinitely bad; a two-sided sign test."""
    from scipy.stats import binomtest
    ta = np.array([r.translation_error for r in a])
    tb = np.array([r.translation_error for r in b])
    lower, higher = int((ta < tb).sum()), int((ta > tb).sum())
    both = np.isfinite(ta) & np.isfinite(tb)
    p = binomtest(lower, lower + higher).pvalue if lower + higher else 1.0
    return {"lower": lower, "higher": higher, "ties": len(ta) - lower - higher,
            "median_difference_cm": round(100 * float(np.median(ta[both] - tb[both])), 3) if both.any() else None,
            "sign_test_p": round(float(p), 3)}


def run_default(args) -> int:
    cfg = scr_config(args)
    scene = room(args, args.seed, args.room, args.mapping)
    fold = scene.split("official")[0]
    queries = [f for f in fold.query if f.has_pose]
    load_before = load()
    clock = Clock()
    buf = cnn.build_buffer(mapping_frames(fold, args, scene.name), cfg)
    buffer_s = clock.read()
    head, hist = cnn.train_head(buf, cfg)
    tuned = copy.deepcopy(head)
    dsac = fine_tune(tuned, buf, cfg)
    # the same compute: coordinate steps at the measured CPU cost of one (candidates are shared)
    per_step = hist["steps_cpu_seconds"] / max(1, cfg.steps)
    same = replace(cfg, steps=cfg.steps + round(dsac["cpu_seconds"] / per_step))
    head_same, hist_same = cnn.train_head(buf, same)
    objective = dict(zip(("before", "after"), training_objective([head, tuned], buf, cfg)))
    candidates = (hist["candidate_seconds"], hist["candidate_cpu_seconds"])
    train = {"scr": (hist["seconds"], hist["cpu_seconds"]),
             "scr-dsac": (hist["seconds"] + dsac["seconds"], hist["cpu_seconds"] + dsac["cpu_seconds"]),
             "scr, same compute": (candidates[0] + hist_same["steps_seconds"],
                                   candidates[1] + hist_same["steps_cpu_seconds"])}
    variants = [("scr", head, cfg.steps, 0), ("scr, same compute", head_same, same.steps, 0),
                ("scr-dsac", tuned, cfg.steps, cfg.dsac.steps)]
    rows, docs, results = [], {}, {}
    for label, h, steps, dsac_steps in variants:
        wall, cpu = buffer_s[0] + train[label][0], buffer_s[1] + train[label][1]
        r, d, res = evaluate(label, ScrLocalizer.from_head(h, cfg, "scr-dsac" if "dsac" in label else "scr"),
                             queries, scene, {"coordinate steps": steps, "DSAC steps": dsac_steps,
                                              "mapping s": round(wall, 1), "mapping CPU s": round(cpu, 1)})
        rows += r
        docs.update(d)
        results[label] = res
    comparison = {mode: paired(results["scr-dsac"][mode], results["scr, same compute"][mode]) for mode, _ in MODES}
    load_after = load()
    print(f"\n{scene.name}: {args.mapping} mapping frames, {len(queries)} queries, buffer {len(buf)} cells "
          f"({buffer_s[0]:.0f} s, {buffer_s[1]:.0f} s CPU), {torch.get_num_threads()} torch threads; coordinate "
          f"training {hist['seconds']:.0f} s ({hist['candidate_seconds']:.0f} s of it choosing candidates), DSAC "
          f"{cfg.dsac.steps} steps x {cfg.dsac.images} images {dsac['seconds']:.0f} s ({dsac['cpu_seconds']:.0f} s "
          f"CPU). Machine: {load_before} before, {load_after} after. Figure: {FIGURE}\n")
    print(markdown_table(rows))
    print(f"\nDSAC's objective, the mean expected pose loss (max(cm, deg)) of its training images under "
          f"fixed minimal sets: {objective['before']:.3f} before fine-tuning, {objective['after']:.3f} after")
    print("scr-dsac against scr, same compute (per query translation error): "
          + "; ".join(f"{mode}: lower on {c['lower']}, higher on {c['higher']}, ties {c['ties']}, median difference "
                      f"{c['median_difference_cm']} cm, sign test p = {c['sign_test_p']}"
                      for mode, c in comparison.items()))
    png = plot_error_cdfs({label: res["RGB-D (Kabsch)"] for label, res in results.items()},
                          args.out / f"{scene.name}{suffix(args)}_scr_rgbd.png",
                          thresholds_for("indoor", scene.scale()),
                          title=f"{scene.name}: RGB-D queries")
    print(f"PNG: {png}")
    write_json(args.json or args.out / f"{scene.name}{suffix(args)}_scr.json", args,
               {"config": cfg.to_dict(), "rows": rows, "paired": comparison, "dsac_objective": objective,
                "evaluations": docs,
                "buffer_seconds": buffer_s[0], "buffer_cpu_seconds": buffer_s[1],
                "torch_threads": torch.get_num_threads(), "load": {"before": load_before, "after": load_after},
                "history": {"coordinates": hist, "dsac": dsac, "same_compute": hist_same}})
    return 0


def run_selection_study(args) -> int:
    cfg = scr_config(args)
    scene = room(args, args.seed, args.room, args.mapping)
    fold = scene.split("official")[0]
    queries = [f for f in fold.query if f.has_pose]
    load_before = load()
    buf = cnn.build_buffer(mapping_frames(fold, args, scene.name), cfg)
    head, hist = cnn.train_head(buf, cfg)
    rows, docs, _ = evaluate("no fine-tuning", ScrLocalizer.from_head(head, cfg), queries, scene,
                             {"DSAC s": 0, "expected loss": None, "argmax loss": None, "max probability": None})
    histories = {}
    for selection in SELECTIONS:
        tuned = copy.deepcopy(head)
        h = histories[selection] = fine_tune(tuned, buf, cfg, selection=selection)
        last = h["dsac_loss"][-max(1, len(h["dsac_loss"]) // 4):]

        def mean(key):
            return round(float(np.mean([x[key] for x in last])), 3)
        r, d, _ = evaluate(selection, ScrLocalizer.from_head(tuned, cfg, "scr-dsac"), queries, scene,
                           {"DSAC s": round(h["seconds"], 1), "expected loss": mean("expected_loss"),
                            "argmax loss": mean("selected_loss"), "max probability": mean("max_probability")})
        rows += r
        docs.update(d)
    print(f"\n{scene.name}: selection study, DSAC {cfg.dsac.steps} steps x {cfg.dsac.images} images x "
          f"{cfg.dsac.hypotheses} hypotheses ({cfg.dsac.optimizer}, lr {cfg.dsac.lr}, alpha {cfg.dsac.alpha}) from "
          f"the same head ({cfg.steps} coordinate steps, {hist['seconds']:.0f} s). On the training images over "
          f"the last 25 % of the steps, whatever the selection trained on: 'expected loss' (over the score "
          f"softmax), 'argmax loss' (the best-scored hypothesis'), 'max probability' (the largest selection "
          f"probability); losses are max(cm, deg). Machine: {load_before} before, {load()} after.\n")
    print(markdown_table(rows))
    write_json(args.json or args.out / f"{scene.name}{suffix(args)}_selection.json", args,
               {"config": cfg.to_dict(), "rows": rows, "evaluations": docs, "histories": histories})
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_room_arguments(ap)
    ap.add_argument("--encoder", help="default: the config's")
    ap.add_argument("--steps", type=int, help="coordinate steps (default: the config's)")
    ap.add_argument("--passes", type=int, help="buffer passes (default: the config's)")
    ap.add_argument("--prototypes", type=int, help="prototypes of the head (default: the config's)")
    ap.add_argument("--dsac-steps", type=int, help=f"DSAC steps (default {DsacConfig().steps})")
    ap.add_argument("--dsac-images", type=int, help=f"images per DSAC step (default {DsacConfig().images})")
    ap.add_argument("--dsac-hypotheses", type=int, help=f"minimal sets per DSAC image (default "
                    f"{DsacConfig().hypotheses})")
    ap.add_argument("--dsac-cells", type=int, help="random cells per DSAC image (default: the config's, 0 = all)")
    ap.add_argument("--dsac-lr", type=float, help=f"DSAC learning rate (default {DsacConfig().lr})")
    ap.add_argument("--dsac-temperature-lr", type=float, help="DSAC step of the prototype head's softmax "
                    "temperature (default: the config's; 0 = the DSAC lr)")
    ap.add_argument("--dsac-optimizer", choices=["sgd", "adam"], help=f"default {DsacConfig().optimizer}")
    ap.add_argument("--dsac-exclude", type=int, help="DSAC images without the keys of their own frame and "
                    "this many around it (default: the config's, -1 = none)")
    ap.add_argument("--alpha", type=float, help=f"selection softmax scale (default {DsacConfig().alpha})")
    ap.add_argument("--min-inliers", type=int, help="RANSAC and PnP inliers needed (default: the config's)")
    ap.add_argument("--mapping-input", choices=["rgbd", "rgb"], default="rgbd",
                    help="mapping frames with depth (coordinate loss) or colour only (reprojection loss)")
    ap.add_argument("--depth-noise", default="none",
                    help="mapping frames' depth: none (exact), kinect (as a Kinect v1 would measure it), "
                    "shift:PX (misregistered by PX pixels) or scale:S (times S); queries keep theirs")
    ap.add_argument("--dsac-minimal", choices=["auto", "p3p"], help="DSAC hypotheses: auto (Kabsch on the "
                    "frame's depth where it has depth) or p3p (from the pixels only); default: the config's")
    ap.add_argument("--dsac-coordinate-weight", type=float, help="weight of the coordinate-loss anchor in "
                    f"each DSAC step (default {DsacConfig().coordinate_weight}; 0: the pose loss alone, as DSAC*)")
    ap.add_argument("--selection-study", action="store_true", help="argmax vs soft-argmax vs probabilistic")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/scr"))
    ap.add_argument("--json", type=Path, help="default: <out>/<scene>_scr.json or _selection.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    return run_selection_study(args) if args.selection_study else run_default(args)


if __name__ == "__main__":
    sys.exit(main())
