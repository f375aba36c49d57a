"""Direct pose refinement (PixLoc-style, Sarlin et al. CVPR 2021): a coarse pose is
refined by aligning dense features of the query with reference features of the map's
3D points at their projections, by Levenberg-Marquardt, coarse to fine.

`pyramid.py`: the dense feature pyramid (ALIKED's backbone scales, not a network
trained for this); `solver.py`: the robust, confidence-weighted LM on SE(3);
`references.py`: the map points' reference features."""
from .pyramid import FeaturePyramid, PyramidConfig, feature_pyramid
from .solver import RefineConfig, RefineResult, refine_pose

__all__ = ["FeaturePyramid", "PyramidConfig", "RefineConfig", "RefineResult", "feature_pyramid", "refine_pose"]
