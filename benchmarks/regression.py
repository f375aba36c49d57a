"""Absolute pose regression against retrieval and structure-based localization on one
scene (issue 4; Sattler et al. CVPR 2019, "Understanding the limitations of CNN-based
absolute camera pose regression"). Their synthetic scene, MapNet trained on 203 vs
9,412 images: MapNet 1.07 m / 4.70 deg, retrieval 0.89 m / 5.71 deg, structure-based
0.01 m / 0.04 deg. Prints one Markdown table and writes JSON.

    python benchmarks/regression.py --synthetic 200 [--epochs 30] [--betas 0.3 1 3 10 30]
    python benchmarks/regression.py --synthetic 10000 --generate-only
    python benchmarks/regression.py --synthetic 200 --layout path
    python benchmarks/regression.py --scene middlebury_temple/templeRing --methods structure
    python benchmarks/regression.py --replot out.json   # summary and β-sweep plot of a saved run

The synthetic room's mapping images cover its free space (--layout cover, the
default; the queries are the same for every N) or follow the old two-loop path
(--layout path). Pose regression runs once per loss (--losses), the hand-tuned loss
once per weight β of the quaternion error (--betas; default: the config's); methods
not registered in this vloc are skipped with a message.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import vloc
from vloc.evaluation import markdown_table, to_json
from vloc.evaluation.run import evaluate

from scenes import SCENES, default_data, load_scene, write_results

REGRESSION = ("posenet", "mapnet")
DEFAULT_METHODS = ["posenet", "mapnet", "retrieval-top1", "retrieval-interpolated", "structure"]
LOSSES = ["hand-tuned", "learned", "reprojection"]
PAPER = ("Sattler et al. 2019, synthetic: MapNet 1.07 m/4.70°, retrieval 0.89 m/5.71°, "
         "structure 0.01 m/0.04°")


def synthetic_config(n_mapping: int, n_query: int = 50, layout: str = "cover"):
    """The demo room at 160x120 (the demo's 65-degree field of view) with n mapping
    frames. "cover": spread over the free space, the queries the same for every n (as
    Sattler et al.'s 50x more images covering the scene); "path": all on the same
    two-loop path with queries near it, so 200 and 10,000 differ only in density."""
    from vloc.datasets.synthetic import SyntheticConfig
    return SyntheticConfig(name=f"room_{layout}_{n_mapping}", width=160, height=120, focal=125.0,
                           n_mapping=n_mapping, n_query=n_query, seed=0, layout=layout)


def synthetic_scene(n_mapping: int, n_query: int, out: Path, layout: str = "cover"):
    from vloc.datasets.synthetic import generate_scene
    t = time.perf_counter()
    config = synthetic_config(n_mapping, n_query, layout)
    scene = generate_scene(out / config.name, config)
    print(f"synthetic room ({layout}), {n_mapping} mapping images: {time.perf_counter() - t:.1f} s "
          f"(generated or found)", file=sys.stderr, flush=True)
    return scene


def coverage(scene, split: str) -> dict:
    """How the mapping images cover the scene: spacing along the capture path, the
    distance (and rotation) from each query to its nearest mapping centre, and the share
    of a 0.25 m grid over the mapping centres' ground plane (2 widest axes) within 0.25 m."""
    import numpy as np
    from scipy.spatial import cKDTree
    fold = scene.split(split)[0]
    maps = [f.cam_from_world for f in fold.mapping if f.has_pose]
    queries = [f.cam_from_world for f in fold.query if f.has_pose]
    C = np.array([p.center for p in maps])
    Q = np.array([p.center for p in queries])
    d, idx = cKDTree(C).query(Q)
    rot = [np.degrees(np.arccos(np.clip((np.trace(q.R @ maps[i].R.T) - 1) / 2, -1, 1)))
           for q, i in zip(queries, idx)]
    axes = np.argsort(-C.std(axis=0))[:2]
    lo, hi = C[:, axes].min(0), C[:, axes].max(0)
    cells = np.meshgrid(*(np.arange(a, b + 0.25, 0.25) for a, b in zip(lo, hi)))
    grid = np.stack(cells, -1).reshape(-1, 2)
    near = cKDTree(C[:, axes]).query(grid)[0]
    steps = np.linalg.norm(np.diff(C, axis=0), axis=1)
    return {"mapping": len(C), "median_step_m": float(np.median(steps)),
            "query_to_nearest_mapping_m": float(np.median(d)),
            "query_to_nearest_mapping_deg": float(np.median(rot)),
            "ground_cells_within_25cm": float(np.mean(near < 0.25)),
            "distinct_centres_1cm": int(len(np.unique(np.round(C, 2), axis=0)))}


def available(method: str) -> bool:
    from vloc.localizers.registry import METHODS, get_method
    if method not in METHODS:
        print(f"skipping {method}: not registered in this vloc", file=sys.stderr)
        return False
    try:
        get_method(method)
    except Exception as e:       # a family still being written: report, do not stop the others
        print(f"skipping {method}: {type(e).__name__}: {e}", file=sys.stderr)
        return False
    return True


def map_config(method: str, loss: str | None, args, beta: float | None = None, seed: int | None = None):
    from vloc.localizers.registry import get_method
    cfg = get_method(method).config_type()
    wanted = {"loss": loss, "beta": beta, "seed": seed, "epochs": args.epochs, "max_minutes": args.train_minutes,
              "image_size": args.image_size, "mapnet_weight": args.mapnet_weight, "trunk": args.trunk,
              "weighting_init": args.weighting_init if loss == "learned" else None,
              "weight_decay": args.weight_decay, "optimizer": args.optimizer, "patience": args.patience,
              "lr_schedule": args.lr_schedule}
    fields = cfg.to_dict() if hasattr(cfg, "to_dict") else {}
    given = {k: v for k, v in wanted.items() if v is not None and k in fields}
    return type(cfg).from_dict({**fields, **given}) if given else cfg


def run_one(scene, split: str, method: str, loss: str | None, args, beta: float | None = None,
            seed: int | None = None) -> dict:
    """Evaluate one method (and loss, and β of the hand-tuned loss). On a one-fold split
    the map is kept under <out>/maps/ so that a regression map's base poses can be drawn
    (--analyze)."""
    t = time.perf_counter()
    label, name = method, method
    if loss is not None:
        label, name = f"{method} ({loss})", f"{method}-{loss}"
    if beta is not None:
        label, name = f"{method} ({loss}, β={beta:g})", f"{name}-beta{beta:g}"
    if seed is not None:
        label, name = f"{label[:-1]}, seed {seed})" if label.endswith(")") else f"{label} (seed {seed})", \
            f"{name}-seed{seed}"
    cfg = map_config(method, loss, args, beta, seed)
    map_dir, build_s, analysis, kept, weights = None, None, None, None, None
    if len(scene.split(split)) == 1:
        # the name ends with the config's digest: runs at once with other options (start,
        # epochs, trunk, ...) in one --out get their own map and training checkpoint
        options = cfg.to_dict() if hasattr(cfg, "to_dict") else repr(cfg)
        digest = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:8]
        map_dir = args.out / "maps" / scene.name / f"{name}-{digest}"
        t_build = time.perf_counter()
        built = vloc.build_map(scene, map_dir, cfg, method=method, split=split, overwrite=True, progress=False)
        build_s = time.perf_counter() - t_build
        kept = built["stats"].get("best_epoch_loss")
        weights = built["stats"].get("learned_weights")
    run = evaluate(scene, split, method, cfg, map_dir=map_dir, preset=args.preset, progress=False,
                   work_dir=args.work)
    s = run.summary
    build_s = build_s if build_s is not None else s.get("median_map_seconds")
    row = {"method": label, "queries": s["queries"], "failures": s["failures"],
           "median t (m)": _round(s["median_translation_error"], 3),
           "median r (°)": _round(s["median_rotation_error"], 2),
           **{f"recall {k}": f"{100 * v:.0f} %" for k, v in s["recall"].items()},
           "s/query": _round(s["median_seconds"], 4),
           "train/map s": _round(build_s, 1)}
    if loss == "reprojection" and kept:          # the held-out best epoch may be a pretraining one
        row["kept epoch"] = kept
    if weights:                                  # where the learned weights settled, as a β
        row["effective β"] = _round(weights["effective_beta"], 2)
    if args.analyze and method in REGRESSION and map_dir is not None:
        from vloc.learning.analysis import analyze_regression_map
        png = map_dir.parent / f"{map_dir.name}-base-poses.png"
        analysis = analyze_regression_map(map_dir, scene, split, png)
        print(f"base poses: {analysis}", file=sys.stderr, flush=True)
    print(f"{label}: {row}", file=sys.stderr, flush=True)
    return {"row": row, "method": method, "loss": loss, "seed": seed, "beta": getattr(cfg, "beta", None) if loss else None,
            "wall_seconds": time.perf_counter() - t, "map_dir": str(map_dir) if map_dir else None, "build_seconds": build_s, "maps": run.maps,
            "base_poses": analysis, "evaluation": to_json(run.results, s, run.config, {}, run.meta)}


def torch_threads(n: int) -> None:
    """One torch thread: on the shared 2-core machine more only spin (see tests/conftest.py)."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(n)


def _round(x, digits):
    return None if x is None else round(float(x), digits)


def _sweep_groups(runs: list[dict], method: str) -> tuple[dict[float, list], list]:
    """A regression method's hand-tuned runs by β (in β order) and its learned runs."""
    tuned: dict[float, list] = {}
    for r in runs:
        if r["method"] == method and r["loss"] == "hand-tuned":
            tuned.setdefault(r["beta"], []).append(r)
    return dict(sorted(tuned.items())), [r for r in runs if r["method"] == method and r["loss"] == "learned"]


def _sweep_stats(rs: list[dict]) -> tuple[float, float, float, float]:
    """Means over runs (seeds) of the median position and rotation errors, each with
    its standard error (0 for one run); a failed run's median counts as infinite."""
    import numpy as np

    def values(key):
        return np.array([np.inf if r["row"][key] is None else r["row"][key] for r in rs], dtype=float)

    def se(v):
        return float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    t, q = values("median t (m)"), values("median r (°)")
    return float(t.mean()), se(t), float(q.mean()), se(q)


def beta_summary(runs: list[dict]) -> list[str]:
    """Per regression method: the β of the hand-tuned loss with the lowest median
    position error (and rotation error), beside the learned weighting; with several
    seeds, each median is the mean over the seeds, given with its standard error, and
    the learned weighting's position error as a multiple of the best β's, and the βs
    lower than the learned weighting on both errors."""
    def err(rs):
        t, _, q, _ = _sweep_stats(rs)
        return round(t, 3), round(q, 2)

    def text(rs):
        t, q = err(rs)
        return f"({t} m, {q}°)" if len(rs) < 2 else f"({t} ± {_sweep_stats(rs)[1]:.3f} m, {q}°)"

    lines = []
    for method in REGRESSION:
        tuned, learned = _sweep_groups(runs, method)
        if len(tuned) < 2:
            continue
        by_t, by_r = min(tuned, key=lambda b: err(tuned[b])), min(tuned, key=lambda b: err(tuned[b])[::-1])
        seeds = max(len(v) for v in tuned.values())
        line = (f"{method}, hand-tuned{f' (mean of {seeds} seeds)' if seeds > 1 else ''}: "
                f"best β {by_t:g} by position {text(tuned[by_t])}, {by_r:g} by rotation {text(tuned[by_r])}")
        if learned:
            ratio = err(learned)[0] / err(tuned[by_t])[0] if err(tuned[by_t])[0] > 0 else float("nan")
            line += f"; learned weighting: {text(learned)}, {ratio:.2f}x the best β's position error"
            lt, lr = err(learned)
            better = [f"{b:g}" for b in tuned if err(tuned[b])[0] < lt and err(tuned[b])[1] < lr]
            line += f"; β lower on both errors: {', '.join(better) if better else 'none'}"
        lines.append(line)
    return lines


def _sweep_points(runs: list[dict], method: str) -> dict[str, tuple[float, float, float, float]]:
    """{label: _sweep_stats} of the hand-tuned loss per β (in β order) and of the
    learned weighting."""
    tuned, learned = _sweep_groups(runs, method)
    points = {f"β = {b:g}": _sweep_stats(rs) for b, rs in tuned.items()}
    if learned:
        points["learned"] = _sweep_stats(learned)
    return points


def sweep_panels(runs: list[dict], title: str = "") -> list[tuple[str, dict]]:
    """(title, points) per regression method with a β sweep of at least two βs."""
    panels = [(f"{m}{': ' + title if title else ''}", _sweep_points(runs, m)) for m in REGRESSION]
    return [(t, p) for t, p in panels if sum(k != "learned" for k in p) >= 2]


def plot_beta_sweep(panels: list[tuple[str, dict]], path: Path, columns: int = 3) -> Path | None:
    """Median position against median rotation error (means over seeds, standard
    error bars) of each β of the hand-tuned loss, joined in β order, and of the
    learned weighting, one panel per (title, points) of `sweep_panels`. A point below
    and left of another is better on both errors. None if there is no panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not panels:
        return None
    cols = min(columns, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(5.2 * cols, 4.2 * rows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (title, points) in zip(axes, panels):
        tuned = [v for k, v in points.items() if k != "learned"]
        ax.plot([v[0] for v in tuned], [v[2] for v in tuned], "-", color="tab:blue", alpha=0.5)
        for label, (t, st, q, sq) in points.items():
            style = dict(fmt="*", ms=14, color="tab:red") if label == "learned" else dict(fmt="o", color="tab:blue")
            ax.errorbar(t, q, xerr=st, yerr=sq, capsize=3, **style)
            ax.annotate(label, (t, q), textcoords="offset points", xytext=(6, 5), fontsize=9)
        ax.set_xlabel("median position error (scene units; m if metric)")
        ax.set_ylabel("median rotation error (°)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp)
    tmp.replace(path)
    return path


def replot(paths: list[Path], png: Path | None = None) -> int:
    """The β summary and sweep plot of results JSON written by this script: one PNG
    beside each, or all panels in `png`."""
    every = []
    for path in paths:
        try:
            doc = json.loads(path.read_text())
            runs, scene = doc["runs"], doc["meta"].get("scene", path.stem)
        except (OSError, ValueError, KeyError) as e:
            raise SystemExit(f"{path}: not a results JSON of benchmarks/regression.py ({e})")
        print(f"{path} ({scene}):")
        for line in beta_summary(runs):
            print("  " + line)
        panels = sweep_panels(runs, scene)
        every += panels
        if png is None:
            out = plot_beta_sweep(panels, path.with_name(path.stem + "_beta.png"))
            print(f"  PNG: {out}" if out else "  (no β sweep to plot)")
    if png is not None:
        print(f"PNG: {plot_beta_sweep(every, png)}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--scene", help="a scene of benchmarks/scenes.py (path under --data)")
    ap.add_argument("--synthetic", type=int, metavar="N", help="the synthetic room with N mapping images")
    ap.add_argument("--queries", type=int, default=50, help="query frames of the synthetic room")
    ap.add_argument("--layout", default="cover", choices=["cover", "path"],
                    help="synthetic mapping frames over the free space (cover) or on the two-loop path")
    ap.add_argument("--split", help="split (default: the scene's benchmark split, 'official' if synthetic)")
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    ap.add_argument("--losses", nargs="+", default=LOSSES, choices=LOSSES)
    ap.add_argument("--betas", nargs="+", type=float, metavar="β",
                    help="hand-tuned loss: one run per weight of the quaternion error (default: the config's)")
    ap.add_argument("--seeds", nargs="+", type=int, help="pose regression: one training per seed "
                    "(the β summary then compares means over seeds)")
    ap.add_argument("--preset", help="recall thresholds (default: outdoor for the synthetic room, "
                    "whose regression errors are decimetres to metres, else the scene's own)")
    ap.add_argument("--epochs", type=int, help="pose regression training epochs (default: the config's)")
    ap.add_argument("--train-minutes", type=float, help="pose regression training budget per map (minutes)")
    ap.add_argument("--trunk", choices=["resnet", "aliked"], help="pose regression trunk (default: the config's)")
    ap.add_argument("--mapnet-weight", type=float, help="mapnet: weight of the relative terms (default: the config's)")
    ap.add_argument("--image-size", type=int, help="pose regression input size (default: the config's)")
    ap.add_argument("--weighting-init", choices=["kendall", "first-batch"],
                    help="learned loss: how s_c, s_r start (default: the config's)")
    ap.add_argument("--lr-schedule", choices=["constant", "cosine"], help="pose regression: the network's "
                    "step size constant or decaying to 0 over the epochs (default: the config's)")
    ap.add_argument("--patience", type=int, help="pose regression early stopping: epochs without a better "
                    "held-out error (default: the config's)")
    ap.add_argument("--weight-decay", type=float, help="pose regression weight decay (default: the config's)")
    ap.add_argument("--optimizer", choices=["adam", "adamw"], help="pose regression optimizer: adam (L2 "
                    "weight decay in the gradient) or adamw (decoupled); default: the config's")
    ap.add_argument("--analyze", action="store_true",
                    help="draw each regression map's base poses (Sattler et al.) beside it")
    ap.add_argument("--generate-only", action="store_true", help="only render the synthetic scene")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/regression"))
    ap.add_argument("--json", type=Path, help="default: <out>/<scene>.json")
    ap.add_argument("--replot", nargs="+", type=Path, metavar="JSON",
                    help="no training: the β summary and sweep plot of results JSON of this script")
    ap.add_argument("--replot-png", type=Path, help="--replot: every panel in this one PNG")
    args = ap.parse_args(argv)
    if args.replot:
        return replot(args.replot, args.replot_png)
    torch_threads(1)
    if (args.scene is None) == (args.synthetic is None):
        ap.error("give exactly one of --scene and --synthetic")
    args.out.mkdir(parents=True, exist_ok=True)
    args.work = args.out
    if args.synthetic is not None:
        scene = synthetic_scene(args.synthetic, args.queries, args.out, args.layout)
        split = args.split or "official"
        args.preset = args.preset or "outdoor"
        print(f"coverage: {coverage(scene, split)}", file=sys.stderr, flush=True)
        if args.generate_only:
            return 0
    else:
        known = {rel: sp for rel, sp, _ in SCENES}
        scene, split = load_scene(args.data, args.scene), args.split or known.get(args.scene, "official")
    runs = []
    for method in args.methods:
        if not available(method):
            continue
        for loss in (args.losses if method in REGRESSION else [None]):
            for beta in (args.betas or [None]) if loss == "hand-tuned" else [None]:
                for seed in (args.seeds or [None]) if method in REGRESSION else [None]:
                    runs.append(run_one(scene, split, method, loss, args, beta, seed))
    n_map = sum(len(f.mapping) for f in scene.split(split)[:1])
    print(f"\n{scene.name}, split {split}: {n_map} mapping images (first fold), "
          f"{runs[0]['row']['queries'] if runs else 0} queries. Reference: {PAPER}\n")
    print(markdown_table([r["row"] for r in runs]))
    for line in beta_summary(runs):
        print(line)
    path = args.json or args.out / f"{scene.name}.json"
    png = plot_beta_sweep(sweep_panels(runs, scene.name), path.with_name(path.stem + "_beta.png"))
    if png:
        print(f"β sweep plot: {png}")
    write_results(path, {"scene": scene.name, "split": split, "coverage": coverage(scene, split),
                         "methods": args.methods, "losses": args.losses, "betas": args.betas,
                         "seeds": args.seeds,
                         "args": {k: str(v) for k, v in vars(args).items()}},
                  {"runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
