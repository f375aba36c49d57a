"""Maps without poses: pycolmap incremental SfM on vloc's features and matches
(geometrically verified with a fundamental matrix). The largest model is kept; its
world frame and scale are SfM's own. Intrinsics stay fixed unless a frame's camera is
a prior (`Frame.camera_prior`, e.g. a plain folder of photos): then bundle adjustment
refines the focal length and radial distortion, as COLMAP does by default."""
from __future__ import annotations

from pathlib import Path

from .._libs import pycolmap
from ..datasets import Frame
from ..errors import MapError
from .colmap_db import known_pose_reconstruction, write_database


def run_sfm(frames: list[Frame], feats, matches, work: Path):
    rec0 = known_pose_reconstruction([f.with_pose(None) for f in frames])
    db = work / "database.db"
    write_database(db, rec0, frames, feats, matches)
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = 2
    opts.extract_colors = False
    opts.random_seed = 0
    guessed = any(f.camera_prior for f in frames)
    opts.ba_refine_focal_length = guessed
    opts.ba_refine_principal_point = False
    opts.ba_refine_extra_params = guessed
    (work / "sfm").mkdir()
    models = pycolmap.incremental_mapping(str(db), str(work), str(work / "sfm"), options=opts)
    if not models:
        raise MapError("structure-from-motion registered no images: too few matches between the images")
    return max(models.values(), key=lambda r: r.num_reg_images())
