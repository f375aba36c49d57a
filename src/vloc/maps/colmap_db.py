"""Writing vloc's features and verified matches into a COLMAP database and a
known-pose Reconstruction, the inputs of pycolmap's triangulator and mapper."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .._libs import pycolmap
from ..datasets import Frame
from ..features import Features


def known_pose_reconstruction(frames: list[Frame], keypoints=None):
    """A pycolmap Reconstruction with one camera per distinct Camera and the frames'
    cam_from_world poses (image ids 1..N in the order of `frames`); `keypoints(frame)`,
    if given, sets each image's 2D points."""
    rec = pycolmap.Reconstruction()
    cam_ids: dict = {}
    for i, f in enumerate(frames, start=1):
        if f.camera not in cam_ids:
            cam_ids[f.camera] = len(cam_ids) + 1
            rec.add_camera_with_trivial_rig(f.camera.to_pycolmap(cam_ids[f.camera]))
        if keypoints is None:
            image = pycolmap.Image(name=f.name, camera_id=cam_ids[f.camera], image_id=i)
        else:
            image = pycolmap.Image(name=f.name, keypoints=np.asarray(keypoints(f), np.float64),
                                   camera_id=cam_ids[f.camera], image_id=i)
        pose = f.cam_from_world if f.cam_from_world is not None else None
        if pose is None:
            rec.add_image_with_trivial_frame(image)
        else:
            rec.add_image_with_trivial_frame(
                image, pycolmap.Rigid3d(pycolmap.Rotation3d(pose.R), pose.t))
    return rec


def write_database(db_path: Path, rec, frames: list[Frame], features: dict[str, Features],
                   matches: dict[tuple[int, int], np.ndarray]) -> None:
    """`matches[(i, j)]` are verified matches between frames[i] and frames[j] (0-based)."""
    config = pycolmap.TwoViewGeometryConfiguration.UNCALIBRATED   # required: UNDEFINED is skipped
    with pycolmap.Database.open(str(db_path)) as db:
        for c in rec.cameras.values():
            db.write_camera(c, use_camera_id=True)
        for r in rec.rigs.values():
            db.write_rig(r, use_rig_id=True)
        for fr in rec.frames.values():
            db.write_frame(fr, use_frame_id=True)
        for im in rec.images.values():
            db.write_image(im, use_image_id=True)
        for i, f in enumerate(frames, start=1):
            db.write_keypoints(i, features[f.name].keypoints.astype(np.float32))
        for (a, b), m in matches.items():
            m = np.ascontiguousarray(m, dtype=np.uint32)
            db.write_matches(a + 1, b + 1, m)
            db.write_two_view_geometry(a + 1, b + 1, pycolmap.TwoViewGeometry(
                inlier_matches=m, config=config))
