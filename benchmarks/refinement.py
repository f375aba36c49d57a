"""The convergence basin of direct pose refinement (method `featuremetric`): each
query's true pose is moved by a growing offset (translation as a fraction of the
scene's camera spread, rotation in degrees, random directions, seeded) and refined
with `FeaturemetricLocalizer.refine`; a refinement succeeds when it ends within 2 %
of the spread and 2° of the truth (CONVERGED); one that reports a pose outside that is
counted as wrong (a false localization, not a reported failure). Prints a table per scene, writes JSON and plots
the success rate against the offset (PNG).

    python benchmarks/refinement.py [--scenes templeRing fountain-P11 synthetic] [--queries 10] [--tries 3]
                                    [--search 0 20]   (without and with the start's turn search)

The same refinement started from the retrieved images' poses (what `vloc evaluate
--method featuremetric` measures) is in benchmarks/baselines.py.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenes import SCENES, SYNTHETIC, default_data, load_scene, write_results  # noqa: E402

OFFSETS = ((0.02, 2.0), (0.05, 5.0), (0.1, 10.0), (0.2, 15.0), (0.3, 20.0), (0.5, 30.0))
CONVERGED = (0.02, 2.0)       # fraction of the spread, degrees
SPLITS = {"middlebury_temple/templeRing": "odd-even", "strecha/fountain-P11": "odd-even", SYNTHETIC: "official"}


def _offset(rng, gt, metres: float, degrees: float):
    from scipy.spatial.transform import Rotation
    from vloc.geometry import Pose
    axis, shift = rng.normal(size=3), rng.normal(size=3)
    R = Rotation.from_rotvec(np.radians(degrees) * axis / np.linalg.norm(axis)).as_matrix()
    world_from_cam = gt.inverse()
    centre = world_from_cam.t + metres * shift / np.linalg.norm(shift)
    return Pose(world_from_cam.R @ R, centre).inverse()          # turned about its own centre, moved


def run_scene(rel: str, data: Path, out: Path, queries: int, tries: int, search: float | None = None) -> dict:
    from dataclasses import replace

    import vloc
    from vloc.geometry import pose_errors
    from vloc.localizers import Query
    scene = load_scene(data, rel)
    split = SPLITS.get(rel) or next(s for r, s, _ in SCENES if r == rel)
    fold = scene.split(split)[0]
    map_dir = out / "maps" / scene.name
    if not (map_dir / "manifest.json").is_file():
        vloc.build_map(list(fold.mapping), map_dir, method="featuremetric", overwrite=True, progress=False)
    loc = vloc.load_localizer(map_dir)
    if search is not None:
        loc.config = replace(loc.config, refine=replace(loc.config.refine, search_degrees=search))
    search = loc.config.refine.search_degrees
    spread = scene.scale()
    rng = np.random.default_rng(0)
    rows = []
    for frac, degrees in OFFSETS:
        ok, wrong, errs, secs, agree = 0, 0, [], [], []
        for q in fold.query[:queries]:
            query = Query(q.name, image_path=q.image_path, camera=q.camera)
            for _ in range(tries):
                start = _offset(rng, q.cam_from_world, frac * spread, degrees)
                t = time.perf_counter()
                est = loc.refine(query, start)
                secs.append(time.perf_counter() - t)
                outcome = "failed"
                if est.success:
                    e_t, e_r = pose_errors(est.cam_from_world, q.cam_from_world)
                    if e_t < CONVERGED[0] * spread and e_r < CONVERGED[1]:
                        ok += 1
                        errs.append(e_t / spread)
                        outcome = "converged"
                    else:
                        wrong += 1          # reported as localized, but not near the truth
                        outcome = "wrong"
                in_view = est.details.get("in_view", 0)
                agree.append({"outcome": outcome, "inliers": est.inliers, "in_view": in_view})
        n = min(queries, len(fold.query)) * tries
        rows.append({"offset_spread": frac, "offset_deg": degrees, "tries": n, "success": ok / n,
                     "wrong": wrong / n,
                     "median_error_pct_of_spread": 100 * float(np.median(errs)) if errs else None,
                     "median_seconds": float(np.median(secs)), "tries_detail": agree})
        print(f"{scene.name} (search ±{search:g}°): {frac:.0%} / {degrees:g}°: {ok}/{n} converged, {wrong} wrong",
              file=sys.stderr, flush=True)
    return {"scene": rel, "search_degrees": search, "split": split, "spread": spread,
            "queries": min(queries, len(fold.query)), "rows": rows}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4))
    labels = [f"{f:.0%}\n{d:g}°" for f, d in OFFSETS]
    colours = {}
    for r in results:
        colour = colours.setdefault(r["scene"], f"C{len(colours)}")
        searched = r["search_degrees"] > 0
        ax.plot(range(len(OFFSETS)), [100 * row["success"] for row in r["rows"]], "o-" if searched else "o--",
                color=colour, alpha=1.0 if searched else 0.6,
                label=f"{r['scene']}" + (f" (turn search ±{r['search_degrees']:g}°)" if searched else " (no search)"))
    ax.set_xticks(range(len(OFFSETS)), labels)
    ax.set_xlabel("starting offset (translation as % of the camera spread, rotation)")
    ax.set_ylabel(f"refined within {CONVERGED[0]:.0%} / {CONVERGED[1]:g}° (%)")
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("featuremetric refinement: convergence basin")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--scenes", nargs="+", default=["templeRing", "fountain-P11", "synthetic"],
                    help="substrings of benchmark scene paths")
    ap.add_argument("--queries", type=int, default=10, help="queries per scene at most (default 10)")
    ap.add_argument("--tries", type=int, default=3, help="random offsets per query and size (default 3)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/refinement"))
    ap.add_argument("--search", type=float, nargs="+", default=[None],
                    help="turn search ranges (degrees) to run, e.g. 0 20 (default: the configuration's)")
    args = ap.parse_args()
    chosen = [rel for rel in SPLITS if any(s in rel for s in args.scenes)]
    results = [run_scene(rel, args.data, args.out, args.queries, args.tries, search)
               for rel in chosen for search in args.search]
    print("converged (in brackets: reported as localized but not within the threshold)")
    print("| scene | " + " | ".join(f"{f:.0%} / {d:g}°" for f, d in OFFSETS) + " | s/refine |")
    print("|---|" + "---:|" * (len(OFFSETS) + 1))
    for r in results:
        cells = [f"{100 * row['success']:.0f} % ({100 * row['wrong']:.0f} %)" for row in r["rows"]]
        seconds = np.median([x["median_seconds"] for x in r["rows"]])
        print(f"| {r['scene']} (search ±{r['search_degrees']:g}°) | " + " | ".join(cells) + f" | {seconds:.2f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, args.out / "basin.png")
    print(f"plot: {args.out / 'basin.png'}")
    write_results(args.out / "refinement.json", {"offsets": OFFSETS, "tries": args.tries}, {"scenes": results})


if __name__ == "__main__":
    main()
