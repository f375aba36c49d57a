"""`vloc demo`: the embedded default. Renders the synthetic textured room (real
photographs on its surfaces, exact poses and depth), builds a structure map from its
mapping frames, localizes its query frames and prints the evaluation."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path


def run_demo(out: str | None = None, quick: bool = False, progress: bool = True) -> int:
    from .api import build_map
    from .datasets.synthetic import SyntheticConfig
    from .errors import VlocError
    from .evaluation import markdown_table, summary_row, write_report
    from .evaluation.run import evaluate
    from .maps.config import MapConfig

    root = Path(out) if out else Path(tempfile.mkdtemp(prefix="vloc-demo-"))
    if root.exists() and not root.is_dir():
        raise VlocError(f"--out {root} exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    cfg = SyntheticConfig(n_mapping=24, n_query=8) if quick else SyntheticConfig()
    try:
        t0 = time.perf_counter()
        scene_dir = root / "scene"
        print(f"1/3 the synthetic room (rendered, or reused from --out): {cfg.n_mapping} mapping + "
              f"{cfg.n_query} query frames at {cfg.width}x{cfg.height} -> {scene_dir}")
        scene = _demo_scene(scene_dir, cfg)
        t1 = time.perf_counter()
        map_dir = root / "map"
        print(f"2/3 building the structure map (local features, 3D points from the known poses and depth) -> {map_dir}")
        manifest = build_map(scene, map_dir, MapConfig(), split="official", overwrite=True, progress=progress)
        st = manifest["stats"]
        print(f"    {st['points']} points ({st['points_mode']}) from {st['images']} images, "
              f"{manifest['config']['extractor']['name']} features, {time.perf_counter() - t1:.1f} s")
        print("3/3 localizing the queries and evaluating")
        run = evaluate(scene, "official", "structure", map_dir=map_dir, preset="indoor", progress=progress)
        report = root / "report"
        write_report(report, run.results, run.summary, config=run.config, meta=run.meta)
        rows = [{"query": r.name, "ok": "yes" if r.success else "FAILED",
                 "t (cm)": round(100 * r.translation_error, 3) if r.success else "-",
                 "r (°)": round(r.rotation_error, 3) if r.success else "-",
                 "inliers": r.inliers, "s": round(r.seconds, 3)} for r in run.results]
        print(markdown_table(rows))
        print()
        print(markdown_table([{"scene": scene.name, "method": "structure",
                               **summary_row(run.summary, "indoor", run.meta["scene_scale"])}]))
        within = run.summary["recall"].get("5cm/5°", 0.0)
        print(f"\n{100 * within:.0f} % of queries within 5 cm / 5°; report in {report} "
              f"(total {time.perf_counter() - t0:.1f} s)")
        return 0 if within >= 0.95 else 1
    finally:
        if out is None:
            shutil.rmtree(root, ignore_errors=True)


def _demo_scene(scene_dir: Path, cfg):
    """The demo room in `scene_dir`: kept when it is already there, re-rendered over an
    older demo scene; any other folder there is refused, never deleted."""
    from .datasets.synthetic import generate_scene
    from .datasets.synthetic.generate import MANIFEST
    from .errors import DataError, VlocError
    try:
        return generate_scene(scene_dir, cfg)
    except DataError:
        if not (scene_dir / MANIFEST).is_file():
            raise VlocError(f"{scene_dir} exists and is not a vloc synthetic scene: give another --out") from None
        return generate_scene(scene_dir, cfg, overwrite=True)
