"""Lowe's ratio for mutual-nearest-neighbour 2D-2D matching, per local feature.

Tuned by `benchmarks/ratios.py` on 47 real image pairs with ground-truth poses
(docs/matching_thresholds.md): the largest ratio whose match precision stays >= 0.9.
DISK keeps that precision with the mutual check alone (1.0: no ratio test); XFeat 0.9.
ALIKED would get 1.0 too, but localization chose 0.9: over Herz-Jesus, templeSparseRing,
templeRing and the virtual gallery, maps matched at 0.8 / 0.9 / 0.95 / 1.0 were
measured, and 0.9 is the one within hloc's medians on all four (benchmarks/RESULTS.md).
The SIFT family would get 0.85; it keeps 0.8 (precision 0.95), the ratio its
core-benchmark figures were measured with."""
from __future__ import annotations

TUNED_RATIOS = {"aliked": 0.9, "disk": 1.0, "xfeat": 0.9}
DEFAULT_RATIO = 0.8


def tuned_ratio(features: str) -> float:
    """The 2D-2D ratio for a registry name of local features."""
    return TUNED_RATIOS.get(features, DEFAULT_RATIO)
