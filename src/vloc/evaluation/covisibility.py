"""Retrieval recall with a visibility criterion: a retrieved mapping image is a correct
neighbour of a query when it observes at least `min_share` of the 3D points the query
observes. Visibility comes from a structure map of all the scene's posed frames (its
COLMAP tracks), so it is measured, not guessed from poses."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..datasets import Scene
from ..progress import progress_bar


def visible_points(map_dir: Path) -> dict[str, set[int]]:
    """Image name -> ids of the 3D points it observes, from a structure map's model."""
    from .._libs import pycolmap
    rec = pycolmap.Reconstruction(str(Path(map_dir) / "model"))
    out = {}
    for im in rec.images.values():
        out[im.name] = {p.point3D_id for p in im.points2D if p.has_point3D()}
    return out


def share(query_points: set[int], other_points: set[int]) -> float:
    return len(query_points & other_points) / max(len(query_points), 1)


@dataclass
class RetrievalRecall:
    recall: float                 # queries with a correct neighbour in the top k / queries that have one
    queries: int
    answerable: int               # queries with at least one correct neighbour among the mapping images
    per_query: list[dict]
    recall1: float = float("nan")  # the same for the top 1
    query_ms: float = float("nan")  # median time of a query's global descriptor (features + encoding)
    map_seconds: float = float("nan")  # median time to build a fold's retrieval map


def retrieval_recall(scene: Scene, split: str, k: int = 5, min_share: float = 0.3,
                     retrieval_config=None, progress: bool = True,
                     visibility: dict[str, set[int]] | None = None, work_dir: Path | None = None) -> RetrievalRecall:
    """`visibility`: image -> observed point ids, if already measured (else a structure
    map of all frames is built here)."""
    import time

    import numpy as np

    from ..api import build_map
    from ..localizers.base import Query
    from ..localizers.retrieval import RetrievalLocalizer
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        if visibility is None:
            build_map(scene, Path(tmp) / "all", split="all", progress=False)
            visibility = visible_points(Path(tmp) / "all")
        vis = visibility
        rows, query_ms, map_s = [], [], []
        for i, fold in enumerate(progress_bar(scene.split(split), "folds", progress)):
            t = time.perf_counter()
            build_map(list(fold.mapping), Path(tmp) / f"r{i}", retrieval_config, method="retrieval-top1",
                      progress=False)
            map_s.append(time.perf_counter() - t)
            loc = RetrievalLocalizer.load(Path(tmp) / f"r{i}")
            for q in fold.query:
                if q.name not in vis:
                    continue                        # not registered in the visibility map
                timings: dict[str, float] = {}
                vec, _ = loc.query_vector(Query(q.name, image_path=q.image_path, camera=q.camera), timings)
                query_ms.append(1000 * timings["features"])
                _, idx = loc.index.search(vec[None], k)
                top = [loc.index.names[j] for j in idx[0] if j >= 0]
                shares = {f.name: share(vis[q.name], vis.get(f.name, set())) for f in fold.mapping}
                best = max(shares.values(), default=0.0)
                rows.append({"query": q.name, "fold": fold.name, "top": top,
                             "top_shares": [round(shares.get(n, 0.0), 3) for n in top],
                             "best_share": round(best, 3), "answerable": best >= min_share,
                             "hit1": bool(top) and shares.get(top[0], 0.0) >= min_share,
                             "hit": any(shares.get(n, 0.0) >= min_share for n in top)})
    ans = [r for r in rows if r["answerable"]]

    def rate(key: str) -> float:
        return float(np.mean([r[key] for r in ans])) if ans else float("nan")

    return RetrievalRecall(rate("hit"), len(rows), len(ans), rows, rate("hit1"),
                           float(np.median(query_ms)) if query_ms else float("nan"),
                           float(np.median(map_s)) if map_s else float("nan"))
