"""Line-cloud maps (method `lines`): a structure map is built as usual (or an existing
one is read), its points are lifted to lines (cloud.py) and only the lines and their
descriptors are written. The map directory holds `lines.h5` (+ `index.faiss` for large
maps, descriptors only) and the manifest: no 3D point, no COLMAP model, no mapping
image's features or pose."""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import MapError, VlocError
from ..maps.config import MapConfig
from ..maps.mapdir import atomic_map_dir, read_manifest, write_manifest
from .cloud import LIFTINGS, LINES_FILE, line_cloud_from_points, write_lines


@dataclass(frozen=True)
class LineMapConfig(MapConfig):
    """A structure map's options (features, pairs, points, ...) plus the lifting."""

    lifting: str = "random"            # random (one line per point) | paired (two points per line)
    seed: int = 0                      # directions, pairing and sparsification
    keep: float = 1.0                  # fraction of the points lifted (sparsification; 1 = all)

    def __post_init__(self):
        super().__post_init__()
        if self.lifting not in LIFTINGS:
            raise VlocError(f"map option lifting must be one of {', '.join(LIFTINGS)}, got {self.lifting!r}")
        if not 0 < self.keep <= 1:
            raise VlocError(f"map option keep must be in (0, 1], got {self.keep}")

    def structure_config(self) -> MapConfig:
        return MapConfig(**{f.name: getattr(self, f.name) for f in fields(MapConfig)})


def build_lines_map(frames, out: Path, config: LineMapConfig = LineMapConfig(), source: dict | None = None,
                    overwrite: bool = False, progress: bool = True) -> dict:
    """Build a structure map from `frames` in a temporary directory and write its line
    cloud to `out`. Returns the manifest."""
    out = Path(out)
    if out.exists() and not overwrite:                  # before the structure map, not after
        raise MapError(f"output exists: {out} (use --overwrite to replace it)")
    if not isinstance(config, LineMapConfig):           # a plain MapConfig: default lifting
        config = LineMapConfig(**config.to_dict())
    from ..maps.build import build_map
    with tempfile.TemporaryDirectory(prefix=".vloc-lines-", dir=out.parent if out.parent.is_dir() else None) as work:
        build_map(list(frames), Path(work) / "structure", config.structure_config(), source, progress=progress)
        return convert_structure_map(Path(work) / "structure", out, config, overwrite=overwrite)


def convert_structure_map(structure_map: Path, out: Path, config: LineMapConfig = LineMapConfig(),
                          overwrite: bool = False) -> dict:
    """The line cloud of an existing structure map (or of a hierarchical map's
    `structure/`), written to `out`. `config`: its lifting, seed and keep are used; its
    other options are recorded (they should be the structure map's)."""
    from ..maps.points import read_points
    from ..matching.index import FLAT_MAX, build_faiss_index, save_index
    structure_map = Path(structure_map)
    if (structure_map / "structure" / "manifest.json").is_file():
        structure_map = structure_map / "structure"
    inner = read_manifest(structure_map, verify="size")
    if inner.get("method") != "structure":
        raise MapError(f"map {structure_map} was built for method {inner.get('method')!r}; "
                       "a line cloud is made from a structure map")
    t0 = time.perf_counter()
    pts = read_points(structure_map / "points.h5")
    cloud, truth = line_cloud_from_points(pts.xyz, pts.descriptors, pts.desc_point, config.lifting, config.seed,
                                      config.keep)
    map_cfg = {**inner["config"]["map"], "lifting": config.lifting, "seed": config.seed, "keep": config.keep}
    with atomic_map_dir(out, overwrite) as tmp:
        write_lines(tmp / LINES_FILE, cloud)
        if len(cloud.descriptors) > FLAT_MAX:           # trained once here, not at every load
            save_index(build_faiss_index(cloud.descriptors, "ivf"), tmp / "index.faiss")
        lift_seconds = time.perf_counter() - t0
        st = inner.get("stats", {})
        timings = {**st.get("timings", {}), "lines": lift_seconds}
        timings["total"] = st.get("timings", {}).get("total", 0.0) + lift_seconds
        stats = {"images": st.get("images", 0), "lines": len(cloud), "descriptors": len(cloud.descriptors),
                 "lifting": config.lifting, "keep": config.keep, "points_lifted": int((truth >= 0).sum()),
                 "timings": timings}
        return write_manifest(tmp, "lines", {"map": map_cfg, "extractor": inner["config"]["extractor"]},
                              inner.get("source", {}), stats)
