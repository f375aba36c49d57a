"""Maps from photos without poses, checked against ground truth: each scene's mapping
images are copied, without calibration or poses, to a temporary folder (outside the
project) and mapped as `vloc map FOLDER` does (images importer, SfM); the SfM camera
centres are aligned to the ground truth by a similarity (vloc.evaluation.align, as `vloc
evaluate MAP DATA` does for SfM maps), and the split's queries are localized with an unknown focal length.

Reports per scene: images registered, the refined focal length against the
calibrated one, the mapping cameras' centre error after alignment (median and max,
also as % of the scene's camera spread), the queries' centre error (median) and
rotation error (median, degrees), the recall at the scene's preset, and mapping time.

    python benchmarks/photos.py [--scenes strecha/fountain-P11:odd-even nerf_fox:every-5 ...]

Prints a table and writes JSON (default benchmarks/out/photos/photos.json).
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_SCENES = ("strecha/fountain-P11:odd-even", "middlebury_temple/templeRing:odd-even", "nerf_fox:every-5")


def run_scene(data: Path, spec: str, work: Path) -> dict:
    import vloc
    from vloc._libs import pycolmap
    from vloc.evaluation.align import sfm_alignment
    from vloc.geometry import pose_errors
    from vloc.localizers import Query
    path, split = spec.split(":")
    scene = vloc.Scene.load(data / path)
    fold = scene.split(split)[0]
    photos = work / scene.name
    photos.mkdir(parents=True)
    for f in fold.mapping:
        shutil.copy(f.image_path, photos / f.image_path.name)
    t = time.perf_counter()
    manifest = vloc.build_map(photos, work / f"{scene.name}_map", progress=False)
    map_seconds = time.perf_counter() - t
    rec = pycolmap.Reconstruction(str(work / f"{scene.name}_map" / "model"))
    truth = {f.image_path.name: f for f in fold.mapping}
    gt_from_map = sfm_alignment(work / f"{scene.name}_map", fold.mapping)
    names = sorted(im.name for im in rec.images.values())
    sfm = np.array([rec.find_image_with_name(n).projection_center() for n in names])
    gt = np.array([truth[n].cam_from_world.center for n in names])
    map_err = np.linalg.norm(gt_from_map.scale * sfm @ gt_from_map.R.T + gt_from_map.t - gt, axis=1)
    loc = vloc.load_localizer(work / f"{scene.name}_map")
    q_t, q_r, failed = [], [], 0
    for q in fold.query:
        est = loc.localize(Query(q.name, image_path=q.image_path))
        if not est.success:
            failed += 1
            q_t.append(np.inf)
            q_r.append(np.inf)
            continue
        e_t, e_r = pose_errors(gt_from_map.pose_to_gt(est.cam_from_world), q.cam_from_world)
        q_t.append(e_t)
        q_r.append(e_r)
    spread = scene.scale()
    cams = list(rec.cameras.values())
    calibrated = fold.mapping[0].camera.fx
    return {
        "scene": scene.name, "split": split, "mapping": len(fold.mapping), "registered": rec.num_reg_images(),
        "points": manifest["stats"]["points"], "focal": float(cams[0].params[0]), "calibrated_focal": calibrated,
        "focal_error_pct": 100 * abs(float(cams[0].params[0]) - calibrated) / calibrated,
        "pairs": manifest["stats"]["pairs"],
        "map_centre_median": float(np.median(map_err)), "map_centre_max": float(map_err.max()),
        "spread": spread, "map_centre_max_pct": 100 * float(map_err.max()) / spread,
        "queries": len(fold.query), "failed": failed,
        "query_centre_median": float(np.median(q_t)), "query_rotation_median": float(np.median(q_r)),
        "query_centre_median_pct": 100 * float(np.median(q_t)) / spread, "map_seconds": map_seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--scenes", nargs="+", default=list(DEFAULT_SCENES), help="PATH:SPLIT under --data")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/out/photos/photos.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for spec in args.scenes:
            rows.append(run_scene(args.data, spec, Path(work)))
            r = rows[-1]
            print(f"{r['scene']}: {r['registered']}/{r['mapping']} registered, {r['map_seconds']:.0f} s", flush=True)
    print("| scene (split) | registered | focal (calibrated) | map centres median / max | max % of spread "
          "| queries failed | query centre median (% of spread) | query rotation median | mapping |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['scene']} ({r['split']}) | {r['registered']}/{r['mapping']} | {r['focal']:.1f} "
              f"({r['calibrated_focal']:.1f}) | {r['map_centre_median']:.4f} / {r['map_centre_max']:.4f} | "
              f"{r['map_centre_max_pct']:.2f} % | {r['failed']}/{r['queries']} | {r['query_centre_median']:.4f} "
              f"({r['query_centre_median_pct']:.2f} %) | {r['query_rotation_median']:.2f}° | {r['map_seconds']:.0f} s |")
    meta = {"commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True).stdout.strip(),
            "machine": platform.node(), "date": time.strftime("%Y-%m-%d")}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**meta, "scenes": rows}, indent=2))
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
