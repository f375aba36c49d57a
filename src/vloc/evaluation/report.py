"""Evaluation reports: results.json (the contract other tools read), report.md,
error_cdf.png and poses.txt (visuallocalization.net submission format).

results.json contract::

    {"queries": [{"name", "success", "translation_error", "rotation_error", "seconds",
                  "inliers", "reason", "correspondences", "timings", "fold",
                  "peak_memory_mb", "cam_from_world", "details" (optional)}, ...],
     "summary": {...},      # see metrics.summarize
     "config":  {...},      # how the run was configured (free form)
     "versions": {...},     # see versions()
     "meta": {"scene", "method", "split", "preset", "date", ...}}

`translation_error` is in scene units (metres for metric scenes), `rotation_error`
in degrees, `seconds` covers the whole query. JSON has no Infinity or NaN: the
errors of a failed query -- and any other non-finite number, e.g. a median that is
infinite because half of the queries failed -- are written as `null`.
`cam_from_world` is [qw, qx, qy, qz, tx, ty, tz] (world-to-camera) or null.

All files are written atomically (temporary file in the same folder + os.replace).
"""
from __future__ import annotations

import dataclasses
import functools
import datetime as _dt
import io
import json
import math
import os
import platform
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..geometry import Pose
from .metrics import QueryResult, normalize_thresholds
from .presets import is_relative

META_KEYS = ("scene", "method", "split", "preset", "date")


# ----------------------------------------------------------------------------- atomic writes
def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write_bytes(path, text.encode("utf-8"))


# ----------------------------------------------------------------------------- JSON
def _jsonable(x):
    """Plain JSON values: non-finite floats -> None, numpy -> Python, Path -> str."""
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Pose):
        return _pose_list(x)
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return _jsonable(dataclasses.asdict(x))
    return str(x)


def _pose_list(p: Pose) -> list[float]:
    return [float(v) for v in (*p.q, *p.t)]


def result_to_json(r: QueryResult) -> dict:
    """One query as in the results.json contract (non-finite errors -> null)."""
    return _jsonable({
        "name": r.name,
        "success": bool(r.success),
        "translation_error": r.translation_error,
        "rotation_error": r.rotation_error,
        "seconds": r.seconds,
        "inliers": r.inliers,
        "reason": r.reason,
        "correspondences": r.correspondences,
        "timings": dict(r.timings),
        "fold": r.fold,
        "peak_memory_mb": r.peak_memory_mb,
        "cam_from_world": None if r.cam_from_world is None else _pose_list(r.cam_from_world),
        **({"details": dict(r.details)} if r.details else {}),
    })


def result_from_json(d: Mapping) -> QueryResult:
    """Inverse of `result_to_json` (null errors -> inf)."""
    def err(v):
        return math.inf if v is None else float(v)
    pose = d.get("cam_from_world")
    return QueryResult(
        name=str(d["name"]), success=bool(d["success"]),
        translation_error=err(d.get("translation_error")),
        rotation_error=err(d.get("rotation_error")),
        seconds=float(d.get("seconds") or 0.0),
        inliers=int(d.get("inliers") or 0),
        correspondences=int(d.get("correspondences") or 0),
        reason=d.get("reason"),
        timings={k: float(v) for k, v in (d.get("timings") or {}).items() if v is not None},
        peak_memory_mb=None if d.get("peak_memory_mb") is None else float(d["peak_memory_mb"]),
        cam_from_world=None if pose is None else Pose.from_qt(pose[:4], pose[4:7]),
        fold=str(d.get("fold") or ""),
        details=dict(d.get("details") or {}),
    )


def to_json(results: Sequence[QueryResult], summary: Mapping, config: Mapping | None = None,
            versions: Mapping | None = None, meta: Mapping | None = None) -> dict:
    """The results.json document (a dict of plain, strictly JSON-valid values).
    `meta` always has scene, method, split, preset and date (now, UTC ISO 8601, if not given)."""
    m = {k: None for k in META_KEYS}
    m.update(dict(meta or {}))
    if not m.get("date"):
        m["date"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return {
        "queries": [result_to_json(r) for r in results],
        "summary": _jsonable(dict(summary)),
        "config": _jsonable(dict(config or {})),
        "versions": _jsonable(dict(versions or {})),
        "meta": _jsonable(m),
    }


def dumps(doc: Mapping) -> str:
    """Strict JSON text (raises on NaN/Infinity, which `to_json` never leaves)."""
    return json.dumps(doc, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def read_results(path) -> tuple[list[QueryResult], dict]:
    """Read a results.json back: (query results, the whole document)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        results = [result_from_json(q) for q in doc["queries"]]
    except FileNotFoundError:
        raise DataError(f"{path}: no such results file") from None
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise DataError(f"{path}: not a vloc results file ({e})") from None
    return results, doc


# ----------------------------------------------------------------------------- versions
def versions() -> dict:
    """Versions of vloc, Python and the main libraries (None where not importable).
    Imports lazily (torch takes seconds) and only once per process."""
    return dict(_versions_cached())


@functools.lru_cache(maxsize=1)
def _versions_cached() -> dict:
    import importlib
    import importlib.metadata as md

    out: dict[str, str | None] = {"python": platform.python_version(), "platform": platform.platform()}

    def mod_version(mod, dist: str) -> str | None:
        v = getattr(mod, "__version__", None)
        if v is None:
            try:
                v = md.version(dist)
            except Exception:
                v = None
        return None if v is None else str(v)

    try:
        import vloc
        out["vloc"] = str(vloc.__version__)
    except Exception:
        out["vloc"] = None
    for name, dist in (("numpy", "numpy"),):
        try:
            out[name] = mod_version(importlib.import_module(name), dist)
        except Exception:
            out[name] = None
    try:
        from vloc._libs import cv2, pycolmap   # cv2 before pycolmap, always
        out["opencv"] = mod_version(cv2, "opencv-python-headless")
        out["pycolmap"] = mod_version(pycolmap, "pycolmap")
    except Exception:
        out["opencv"] = out["pycolmap"] = None
    for name, dist in (("poselib", "poselib"), ("faiss", "faiss-cpu"), ("torch", "torch")):
        try:
            out[name] = mod_version(importlib.import_module(name), dist)
        except Exception:
            out[name] = None
    return out


# ----------------------------------------------------------------------------- pose files
def _check_name(name: str) -> str:
    name = str(name)
    if not name or name != name.strip() or "\n" in name or "\r" in name:
        raise DataError(f"query name {name!r} cannot be written to a pose file "
                        "(empty, surrounding whitespace or a line break)")
    return name


def format_pose_line(name: str, cam_from_world: Pose) -> str:
    q, t = cam_from_world.q, cam_from_world.t
    return " ".join([_check_name(name), *(repr(float(v)) for v in (*q, *t))])


def write_pose_file(path, poses: Mapping[str, Pose]) -> Path:
    """Write `name qw qx qy qz tx ty tz` per line (cam_from_world, world-to-camera), the
    visuallocalization.net submission format. Names may contain spaces (the reader splits
    from the right), not line breaks."""
    path = Path(path)
    text = "".join(format_pose_line(n, p) + "\n" for n, p in poses.items())
    _atomic_write_text(path, text)
    return path


def read_pose_file(path) -> dict[str, Pose]:
    """Read a pose file written by `write_pose_file` (or for visuallocalization.net).
    Blank lines and lines starting with '#' are skipped. A malformed line is a DataError
    naming the file and the line number."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: no such pose file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read pose file ({e})") from None
    poses: dict[str, Pose] = {}
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.rsplit(None, 7)
        if len(parts) != 8:
            raise DataError(f"{path}:{i}: expected 'name qw qx qy qz tx ty tz', got {s!r}")
        name = parts[0]
        try:
            vals = [float(v) for v in parts[1:]]
        except ValueError:
            raise DataError(f"{path}:{i}: non-numeric pose value in {s!r}") from None
        if not all(math.isfinite(v) for v in vals):
            raise DataError(f"{path}:{i}: non-finite pose value in {s!r}")
        if name in poses:
            raise DataError(f"{path}:{i}: duplicate image name {name!r}")
        try:
            poses[name] = Pose.from_qt(vals[:4], vals[4:])
        except DataError as e:
            raise DataError(f"{path}:{i}: {e}") from None
    return poses


# ----------------------------------------------------------------------------- Markdown
def _fmt(v, floatfmt: str = ".4g") -> str:
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return format(v, floatfmt)
    return str(v)


def _cell(s: str) -> str:
    return " ".join(str(s).split()).replace("|", "\\|") or " "


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None,
                   floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table, one row per dict. Columns are the keys in order
    of first appearance unless given; missing values, None and NaN print as '-', inf as
    'inf', floats with `floatfmt`. Numeric columns are right-aligned."""
    if columns is None:
        columns = []
        for row in rows:
            for k in row:
                if k not in columns:
                    columns.append(k)
    columns = list(columns)
    if not columns:
        return ""

    def is_num(v) -> bool:
        if isinstance(v, (bool, np.bool_)):
            return False
        if isinstance(v, (int, float, np.integer, np.floating)):
            return True
        if isinstance(v, str):      # pre-formatted numbers: "2.36", "40.0 %", "inf"
            try:
                float(v.removesuffix("%").strip())
                return True
            except ValueError:
                return False
        return False

    def numeric(c):
        vals = [r.get(c) for r in rows if r.get(c) not in (None, "-", "")]
        return bool(vals) and all(is_num(v) for v in vals)

    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |",
             "|" + "|".join("---:" if numeric(c) else "---" for c in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(_fmt(row.get(c), floatfmt)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _num3(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return "inf"
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def translation_unit(preset: str | None, scene_scale: float | None) -> tuple[str, float]:
    """(unit label, factor from scene units) for printing translation errors:
    cm for metric presets, % of the scene scale for `relative` (scene units without a scale)."""
    if is_relative(preset):
        if scene_scale and scene_scale > 0 and math.isfinite(scene_scale):
            return "% of scale", 100.0 / scene_scale
        return "scene units", 1.0
    return "cm", 100.0


def summary_row(summary: Mapping, preset: str | None = None,
                scene_scale: float | None = None) -> dict:
    """One readable row of a summary (for `markdown_table`; benchmarks prepend scene/method):
    queries, failures, median errors with units, recall per threshold (%), median s/query."""
    unit, factor = translation_unit(preset, scene_scale)
    mt, mr = summary.get("median_translation_error"), summary.get("median_rotation_error")
    n, fails = summary.get("queries", 0), summary.get("failures", 0)
    # A null median in a JSON summary read back means "infinite" when queries exist.
    if mt is None and n:
        mt = math.inf
    if mr is None and n:
        mr = math.inf
    row = {
        "queries": n,
        "failures": fails,
        f"median t ({unit})": _num3(None if mt is None else mt * factor),
        "median r (°)": _num3(mr),
    }
    for label, v in (summary.get("recall") or {}).items():
        row[f"recall {label}"] = "-" if v is None else f"{100 * v:.1f} %"
    ms = summary.get("median_seconds")
    row["median s/query"] = "-" if ms is None else f"{ms:.3g}"
    if summary.get("peak_memory_mb") is not None:
        row["peak memory (MB)"] = f"{summary['peak_memory_mb']:.0f}"
    return row


def failure_summary(results: Sequence[QueryResult], most: int = 3) -> list[str]:
    """The commonest failure reasons, a line each: how many failures give a reason of the
    same wording (numbers aside), an example of it and its query."""
    groups: dict[str, list[QueryResult]] = {}
    for r in results:
        if not r.success:
            groups.setdefault(re.sub(r"\d+(\.\d+)?", "#", r.reason or ""), []).append(r)
    ranked = sorted(groups.values(), key=len, reverse=True)
    lines = [f"{len(g)} x {g[0].reason or 'no reason given'} (e.g. {g[0].name})" for g in ranked[:most]]
    if len(ranked) > most:
        lines.append(f"{sum(map(len, ranked[most:]))} x other reasons")
    return lines


def render_markdown(results: Sequence[QueryResult], summary: Mapping,
                    meta: Mapping | None = None) -> str:
    """report.md: a summary table, per-stage median timings, then one row per query."""
    meta = dict(meta or {})
    preset, scale = meta.get("preset"), meta.get("scene_scale")
    unit, factor = translation_unit(preset, scale)
    title = " ".join(x for x in (
        str(meta["method"]) if meta.get("method") else "",
        f"on {meta['scene']}" if meta.get("scene") else "",
        f"({meta['split']})" if meta.get("split") else "") if x)
    out = [f"# vloc evaluation{': ' + title if title else ''}", ""]
    info = [f"{k}: {_fmt(meta[k])}" for k in ("preset", "scene_scale", "date") if meta.get(k) is not None]
    if info:
        out += ["- " + "\n- ".join(info), ""]
    out += ["## Summary", "", markdown_table([summary_row(summary, preset, scale)])]
    out.append("Failures count as infinite errors: medians are over all queries and a failure "
               "is a miss at every threshold.\n")
    reasons = failure_summary(results)
    if reasons:
        out += ["Failure reasons:", "", *(f"- {line}" for line in reasons), ""]
    timings = summary.get("median_timings") or {}
    if timings:
        out += ["## Median time per stage", "",
                markdown_table([{"stage": k, "median (ms)": f"{1000 * v:.1f}"}
                                for k, v in timings.items()])]
    out += [f"## Queries ({len(results)})", ""]
    rows = [{
        "name": r.name,
        "fold": r.fold or None,
        "success": r.success,
        f"t ({unit})": _num3(r.translation_error * factor),
        "r (°)": _num3(r.rotation_error),
        "s": f"{r.seconds:.3g}",
        "inliers": r.inliers,
        "correspondences": r.correspondences,
        "reason": r.reason or "",
    } for r in results]
    cols = ["name", "fold", "success", f"t ({unit})", "r (°)", "s", "inliers", "correspondences",
            "reason"]
    if not any(r.fold for r in results):
        cols.remove("fold")
    out.append(markdown_table(rows, cols) if rows else "_no queries_\n")
    return "\n".join(out)


# ----------------------------------------------------------------------------- plots
def plot_error_cdfs(results_by_method: Mapping[str, Sequence[QueryResult]], path,
                    thresholds=None, *, scene_scale: float | None = None,
                    preset: str | None = None, title: str | None = None) -> Path:
    """Two panels, cumulative distribution of the translation and of the rotation error,
    log x axis, one curve per method, dashed lines at the thresholds. The y axis is the
    percentage of *all* queries, so failures keep a curve below 100 %. Translation is in
    metres, or in % of `scene_scale` for the `relative` preset."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ths = normalize_thresholds(thresholds or [])
    rel = is_relative(preset) and scene_scale and scene_scale > 0
    t_factor, t_unit = (100.0 / scene_scale, "% of scene scale") if rel else (1.0, "m")
    if is_relative(preset) and not rel:
        t_unit = "scene units"

    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    panels = ((axes[0], "translation_error", f"translation error ({t_unit})", t_factor,
               sorted({t for t, _, _ in ths})),
              (axes[1], "rotation_error", "rotation error (°)", 1.0, sorted({r for _, r, _ in ths})))
    for ax, attr, xlabel, factor, lines in panels:
        per_method = {m: np.array([getattr(r, attr) for r in res], dtype=np.float64) * factor
                      for m, res in results_by_method.items()}
        finite = np.concatenate([e[np.isfinite(e)] for e in per_method.values()] or [np.zeros(0)])
        marks = [v * factor for v in lines]
        pos = np.concatenate([finite[finite > 0], marks])
        lo = float(pos.min()) / 2 if len(pos) else 1e-3
        hi = float(pos.max()) * 2 if len(pos) else 1.0
        if hi <= lo:
            hi = lo * 10
        for method, e in per_method.items():
            n = len(e)
            errs = np.sort(e[np.isfinite(e)])
            fails = n - len(errs)
            label = f"{method} ({fails}/{n} failed)" if fails else f"{method} ({n} queries)"
            if len(errs) == 0:
                ax.plot([], [], label=f"{method} (no pose, {n} queries)")
                continue
            # Errors of exactly 0 cannot sit on a log axis: they start at the left edge.
            errs = np.clip(errs, lo, None)
            y = 100.0 * np.arange(1, len(errs) + 1) / n
            ax.step(np.concatenate([[lo], errs, [hi]]), np.concatenate([[0.0], y, [y[-1]]]),
                    where="post", label=label)
        for v in marks:
            ax.axvline(v, color="0.5", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(0, 100.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("queries within (%)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path = Path(path)
    _atomic_write_bytes(path, buf.getvalue())
    return path


# ----------------------------------------------------------------------------- all at once
def write_report(out_dir, results: Sequence[QueryResult], summary: Mapping, *,
                 config: Mapping | None = None, versions: Mapping | None = None,
                 meta: Mapping | None = None, thresholds=None,
                 plot: bool = True) -> dict[str, Path]:
    """Write results.json, report.md, error_cdf.png and poses.txt into `out_dir`.

    `meta` carries scene, method, split, preset, date and, for the relative preset,
    `scene_scale` (used for units). `versions=None` collects them with `versions()`.
    The thresholds drawn on the plot default to the summary's. Returns {kind: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if versions is None:
        versions = _collect_versions()
    doc = to_json(results, summary, config, versions, meta)
    meta_full = dict(meta or {})
    meta_full.setdefault("date", doc["meta"]["date"])
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "report.md",
             "poses": out_dir / "poses.txt"}
    _atomic_write_text(paths["json"], dumps(doc))
    _atomic_write_text(paths["markdown"], render_markdown(results, summary, meta_full))
    write_pose_file(paths["poses"], {r.name: r.cam_from_world for r in results
                                     if r.success and r.cam_from_world is not None})
    if plot:
        ths = thresholds if thresholds is not None else summary.get("thresholds") or []
        paths["cdf"] = plot_error_cdfs(
            {str(meta_full.get("method") or "method"): results}, out_dir / "error_cdf.png", ths,
            scene_scale=meta_full.get("scene_scale"), preset=meta_full.get("preset"),
            title=" on ".join(str(meta_full[k]) for k in ("method", "scene") if meta_full.get(k)) or None)
    return paths


_collect_versions = versions
