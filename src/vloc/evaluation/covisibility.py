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


def retrieval_recall(scene: Scene, split: str, k: int = 5, min_share: float = 0.3,
                     retrieval_config=None, progress: bool = True) -> RetrievalRecall:
    from ..api import build_map
    from ..localizers.retrieval import RetrievalLocalizer
    import numpy as np
    with tempfile.TemporaryDirectory() as tmp:
        build_map(scene, Path(tmp) / "all", split="all", progress=False)
        vis = visible_points(Path(tmp) / "all")
        rows = []
        for i, fold in enumerate(progress_bar(scene.split(split), "folds", progress)):
            build_map(list(fold.mapping), Path(tmp) / f"r{i}", retrieval_config, method="retrieval-top1",
                      progress=False)
            loc = RetrievalLocalizer.load(Path(tmp) / f"r{i}")
            for q in fold.query:
                if q.name not in vis:
                    continue                        # not registered in the visibility map
                img_feats = _query_vector(loc, q)
                scores, idx = loc.index.search(img_feats[None], k)
                top = [loc.index.names[j] for j in idx[0] if j >= 0]
                shares = {f.name: share(vis[q.name], vis.get(f.name, set())) for f in fold.mapping}
                best = max(shares.values(), default=0.0)
                rows.append({"query": q.name, "fold": fold.name, "top": top,
                             "top_shares": [round(shares.get(n, 0.0), 3) for n in top],
                             "best_share": round(best, 3), "answerable": best >= min_share,
                             "hit": any(shares.get(n, 0.0) >= min_share for n in top)})
    answerable = [r for r in rows if r["answerable"]]
    recall = float(np.mean([r["hit"] for r in answerable])) if answerable else float("nan")
    return RetrievalRecall(recall, len(rows), len(answerable), rows)


def _query_vector(loc, frame):
    from ..localizers.base import Query
    return loc.query_vector(Query(frame.name, image_path=frame.image_path))[0]
