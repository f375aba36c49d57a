"""Per-query results and their summary: median errors, recall at thresholds, runtime, memory.

Conventions (the field's, e.g. visuallocalization.net):
- translation error = distance between the estimated and the ground-truth camera
  *centres*, in scene units (metres for metric scenes); not |t_est - t_gt|;
- rotation error = angle of R_est @ R_gt.T in degrees (clipped arccos, never NaN);
- a failed query has both errors infinite. It counts in every statistic: the
  medians are *true* medians over all queries (so they become infinite once half
  of the queries fail) and a failure is a miss for every recall threshold.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..geometry import Pose, pose_errors

if TYPE_CHECKING:
    from ..localizers.base import Estimate

INF = math.inf


@dataclass
class QueryResult:
    """The outcome of one query, ready to be summarized and reported.

    `translation_error` is in scene units, `rotation_error` in degrees; both are
    `inf` when the query failed. `seconds` is the whole query (all stages),
    `timings` the seconds per stage as the localizer reported them.
    `cam_from_world` is the estimated pose (for the pose file), None on failure."""

    name: str
    success: bool
    translation_error: float = INF
    rotation_error: float = INF
    seconds: float = 0.0
    inliers: int = 0
    correspondences: int = 0
    reason: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float | None = None
    cam_from_world: Pose | None = None
    fold: str = ""
    details: dict = field(default_factory=dict)     # method-specific facts (Estimate.details)

    def within(self, t_max: float, r_max_deg: float) -> bool:
        """Localized within both thresholds (failures never are)."""
        return bool(self.success and self.translation_error <= t_max
                    and self.rotation_error <= r_max_deg)


def query_result(name: str, estimate: Estimate, gt_cam_from_world: Pose | None, seconds: float,
                 *, fold: str = "", peak_memory_mb: float | None = None) -> QueryResult:
    """Score one localizer answer against the ground truth.

    A failed estimate (no pose) gives infinite errors and keeps its `reason`.
    A query without a ground-truth pose cannot be evaluated: ValueError."""
    if gt_cam_from_world is None:
        raise ValueError(f"query {name!r} has no ground-truth pose; it cannot be evaluated")
    pose = estimate.cam_from_world
    if pose is not None:
        t_err, r_err = pose_errors(pose, gt_cam_from_world)
    else:
        t_err, r_err = INF, INF
    return QueryResult(
        name=name,
        success=pose is not None,
        translation_error=float(t_err),
        rotation_error=float(r_err),
        seconds=float(seconds),
        inliers=int(estimate.inliers),
        correspondences=int(estimate.correspondences),
        reason=estimate.reason,
        timings={str(k): float(v) for k, v in (estimate.timings or {}).items()},
        peak_memory_mb=None if peak_memory_mb is None else float(peak_memory_mb),
        cam_from_world=pose,
        fold=fold,
        details=dict(estimate.details or {}),
    )


def true_median(values: Iterable[float]) -> float:
    """Median where `inf` (a failure) is a value like any other: the middle of the
    sorted values; for an even count the mean of the two middle ones (inf if either
    is inf). NaN for no values."""
    v = sorted(float(x) for x in values)
    n = len(v)
    if n == 0:
        return math.nan
    mid = n // 2
    if n % 2:
        return v[mid]
    a, b = v[mid - 1], v[mid]
    return INF if math.isinf(b) else (a + b) / 2.0


def _threshold_label(t: float, r: float) -> str:
    return f"{t:g}/{r:g}°"


def normalize_thresholds(thresholds: Iterable[Sequence]) -> list[tuple[float, float, str]]:
    """(t, r) or (t, r, label) pairs to (t, r, label) triples; t in scene units, r in degrees.
    Exact repeats are dropped; one label for two different thresholds is a ValueError."""
    out = []
    for th in thresholds:
        if len(th) == 2:
            t, r = th
            label = _threshold_label(float(t), float(r))
        elif len(th) == 3:
            t, r, label = th
        else:
            raise ValueError(f"a threshold is (t, r) or (t, r, label), got {th!r}")
        t, r, label = float(t), float(r), str(label)
        if not (t > 0 and r > 0):
            raise ValueError(f"thresholds must be positive, got ({t}, {r})")
        same = [o for o in out if o[2] == label]
        if same and same[0][:2] != (t, r):
            raise ValueError(f"two thresholds are labelled {label!r}: {same[0][:2]} and {(t, r)}")
        if not same:
            out.append((t, r, label))
    return out


def recall(results: Sequence[QueryResult], t_max: float, r_max_deg: float) -> float:
    """Fraction of all queries localized within both thresholds (failures are misses)."""
    if not results:
        return 0.0
    return sum(r.within(t_max, r_max_deg) for r in results) / len(results)


def summarize(results: Sequence[QueryResult], thresholds: Iterable[Sequence]) -> dict:
    """Summary statistics of a list of query results.

    Keys: `queries`, `failures`, `median_translation_error` (scene units),
    `median_rotation_error` (degrees) -- true medians with failures as inf --,
    `mean_seconds`, `median_seconds` (whole query), `median_timings`
    ({stage: median seconds over the queries that report the stage, failed ones
    included}), `thresholds` ([[t, r, label], ...]), `recall` ({label: fraction of
    all queries within both thresholds}), `peak_memory_mb` (max over queries, None
    if not measured), `median_inliers`.
    With no results the medians and means are None and every recall is 0."""
    results = list(results)
    ths = normalize_thresholds(thresholds)
    n = len(results)
    failures = sum(not r.success for r in results)

    def _or_none(x: float) -> float | None:
        return None if math.isnan(x) else x

    stages: dict[str, list[float]] = {}
    for r in results:
        for k, v in r.timings.items():
            stages.setdefault(k, []).append(float(v))
    mems = [r.peak_memory_mb for r in results if r.peak_memory_mb is not None]
    seconds = [r.seconds for r in results]
    return {
        "queries": n,
        "failures": failures,
        "median_translation_error": _or_none(true_median(r.translation_error for r in results)),
        "median_rotation_error": _or_none(true_median(r.rotation_error for r in results)),
        "mean_seconds": float(np.mean(seconds)) if n else None,
        "median_seconds": float(np.median(seconds)) if n else None,
        "median_timings": {k: float(np.median(v)) for k, v in stages.items()},
        "thresholds": [[t, r, label] for t, r, label in ths],
        "recall": {label: recall(results, t, r) for t, r, label in ths},
        "peak_memory_mb": max(mems) if mems else None,
        "median_inliers": float(np.median([r.inliers for r in results])) if n else None,
    }
