"""Lowe ratio of mutual-nearest-neighbour matching, tuned per local feature.

Each frame of a scene is matched with its next 2 frames in the scene's list (covisible
neighbours) by `match_mutual_ratio` (mutual check always on) at each ratio; a match is
correct when its symmetric epipolar error from the ground-truth poses is below
--threshold px at the extraction resolution (scaled to original pixels by
max(w, h) / resize_max for larger images). Precision = correct / matches, summed over
the pairs. The tuned ratio of a feature is the largest ratio whose precision over all
pairs of all scenes stays >= --min-precision: the most correct matches at that precision.
Default frames (with ground truth): fountain-P11 all 11, templeRing every 3rd, TUM fr3
office 10 spread ones.

    python benchmarks/ratios.py [--features sift ...] [--ratios 0.6 ... 1.0] [--min-precision 0.9]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenes import default_data, load_scene, write_results  # noqa: E402

FEATURES = ("sift", "rootsift", "colmap-sift", "aliked", "disk", "xfeat")
RATIOS = (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
# scene -> frame selection: ("step", k) every k-th frame, ("spread", n) n frames evenly spread
SCENES = {"strecha/fountain-P11": ("step", 1),
          "middlebury_temple/templeRing": ("step", 3),
          "tum_fr3_long_office_household": ("spread", 10)}


def select(frames: list, how: tuple[str, int]) -> list:
    kind, k = how
    if kind == "step":
        return frames[::k]
    idx = np.unique(np.linspace(0, len(frames) - 1, min(k, len(frames))).round().astype(int))
    return [frames[i] for i in idx]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_scene(extractor, frames: list, args) -> dict:
    """Per-pair matches and correct matches at each ratio, for one feature and scene."""
    from vloc.imageio import read_image
    from vloc.matching import match_mutual_ratio
    from vloc.matching.geometry import epipolar_errors
    feats, t = [], time.perf_counter()
    for f in frames:                                  # each image extracted once
        img, size = read_image(f.image_path, grayscale=True, max_size=args.resize_max)
        feats.append(extractor.extract(img, size))
    t_extract = (time.perf_counter() - t) / len(frames)
    pairs = [(i, j) for i in range(len(frames)) for j in range(i + 1, min(i + 1 + args.neighbours, len(frames)))]
    out = {"pairs": [f"{frames[i].name}|{frames[j].name}" for i, j in pairs],
           "keypoints": [len(x) for x in feats], "extract_s_per_image": t_extract,
           "matches": {}, "correct": {}}
    for r in args.ratios:
        out["matches"][r], out["correct"][r] = [], []
    for i, j in pairs:
        f0, f1, a, b = frames[i], frames[j], feats[i], feats[j]
        thr = args.threshold * max(1.0, max(*a.image_size, *b.image_size) / args.resize_max)
        for r in args.ratios:
            m = match_mutual_ratio(a.descriptors, b.descriptors, r, mutual=True)
            err = epipolar_errors(a.keypoints[m[:, 0]], b.keypoints[m[:, 1]], f0.camera, f1.camera,
                                  f0.cam_from_world, f1.cam_from_world) if len(m) else np.zeros(0)
            out["matches"][r].append(int(len(m)))
            out["correct"][r].append(int(np.sum(err < thr)))
    return out


def summarize(per_scene: dict, ratios) -> dict:
    """ratio -> pairs, correct/pair, matches/pair, precision over the given scenes."""
    s = {}
    for r in ratios:
        n = sum(len(v["pairs"]) for v in per_scene.values())
        c = sum(sum(v["correct"][r]) for v in per_scene.values())
        m = sum(sum(v["matches"][r]) for v in per_scene.values())
        s[r] = {"pairs": n, "correct_per_pair": c / max(n, 1), "matches_per_pair": m / max(n, 1),
                "precision": c / m if m else float("nan")}
    return s


def choose(summary: dict, min_precision: float):
    ok = [r for r, v in summary.items() if v["precision"] >= min_precision]
    return max(ok) if ok else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--features", nargs="+", default=list(FEATURES))
    ap.add_argument("--scenes", nargs="+", default=list(SCENES), help="default frame selection per scene above")
    ap.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    ap.add_argument("--neighbours", type=int, default=2, help="pairs: each frame with its next N frames")
    ap.add_argument("--threshold", type=float, default=4.0, help="epipolar px at the extraction resolution")
    ap.add_argument("--min-precision", type=float, default=0.9)
    ap.add_argument("--resize-max", type=int, default=1024)
    ap.add_argument("--max-keypoints", type=int, default=4096)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/out/ratios.json"))
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from vloc._libs import cv2
    cv2.setNumThreads(1)
    from vloc.evaluation import markdown_table
    from vloc.features import make_extractor

    scenes = {}
    for rel in args.scenes:
        sc = load_scene(args.data, rel)
        posed = [f for f in sc.frames if f.cam_from_world is not None]     # ground truth only
        scenes[rel] = select(posed, SCENES.get(rel, ("step", 1)))
        log(f"{rel}: {len(scenes[rel])} of {len(posed)} posed frames")
    t0, results, rows, chosen = time.perf_counter(), {}, [], {}
    for name in args.features:
        ex = make_extractor(name, resize_max=args.resize_max, max_keypoints=args.max_keypoints)
        per_scene = {}
        for rel, frames in scenes.items():
            t = time.perf_counter()
            per_scene[rel] = run_scene(ex, frames, args)
            log(f"{name} {rel}: {np.mean(per_scene[rel]['keypoints']):.0f} kp/image, "
                f"{per_scene[rel]['extract_s_per_image']:.2f} s/image extraction, {time.perf_counter() - t:.0f} s")
        total = summarize(per_scene, args.ratios)
        chosen[name] = choose(total, args.min_precision)
        results[name] = {"all": total, "chosen_ratio": chosen[name], "scenes": {}}
        for rel, v in per_scene.items():
            sm = summarize({rel: v}, args.ratios)
            results[name]["scenes"][rel] = {"summary": sm, "chosen_ratio": choose(sm, args.min_precision), **v}
        for r, v in total.items():
            rows.append({"feature": name, "ratio": r, "matches/pair": round(v["matches_per_pair"], 1),
                         "correct/pair": round(v["correct_per_pair"], 1), "precision": round(v["precision"], 3),
                         "chosen": "<-" if r == chosen[name] else ""})
        log(f"{name}: chosen ratio {chosen[name]} ({time.perf_counter() - t0:.0f} s so far)")
    print(markdown_table(rows))
    best = []
    for name, r in chosen.items():
        row = {"feature": name, "ratio": r}
        if r is not None:
            row.update({"correct/pair": round(results[name]["all"][r]["correct_per_pair"], 1),
                        "precision": round(results[name]["all"][r]["precision"], 3)})
            for rel in scenes:
                sc = results[name]["scenes"][rel]
                row[f"prec. {rel.split('/')[-1][:12]}"] = round(sc["summary"][r]["precision"], 3)
        for rel in scenes:     # what each scene alone would choose
            row[f"ratio {rel.split('/')[-1][:12]} alone"] = results[name]["scenes"][rel]["chosen_ratio"]
        best.append(row)
    print(f"Chosen ratio (largest with precision >= {args.min_precision}):")
    print(markdown_table(best))
    meta = {"argv": sys.argv[1:], "scenes": {k: [f.name for f in v] for k, v in scenes.items()},
            "ratios": args.ratios, "neighbours": args.neighbours, "threshold_px": args.threshold,
            "min_precision": args.min_precision, "resize_max": args.resize_max,
            "max_keypoints": args.max_keypoints, "run_s": time.perf_counter() - t0}
    write_results(args.json, meta, {"chosen": chosen, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
