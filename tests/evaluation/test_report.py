import json
import math
import struct

import numpy as np
import pytest

from vloc.errors import DataError
from vloc.evaluation import (QueryResult, markdown_table, plot_error_cdfs, read_pose_file,
                             read_results, summarize, thresholds_for, to_json, versions,
                             write_pose_file, write_report)
from vloc.geometry import Pose, quat_to_rotmat

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAKE_VERSIONS = {"vloc": "0.1.0", "python": "3"}


def random_pose(rng):
    return Pose(quat_to_rotmat(rng.normal(size=4)), rng.normal(size=3) * 5)


@pytest.fixture
def results():
    rng = np.random.default_rng(0)
    out = []
    for i in range(7):
        if i in (2, 5):
            out.append(QueryResult(f"seq/frame {i}.png", False, math.inf, math.inf, 0.3 + i / 10,
                                   inliers=3, correspondences=20, reason="too few inliers | pnp",
                                   timings={"extract": 0.1, "match": 0.05}, fold="f0"))
        else:
            out.append(QueryResult(f"seq/frame {i}.png", True, 0.004 * (i + 1), 0.3 * (i + 1),
                                   0.2 + i / 10, inliers=100 + i, correspondences=300,
                                   timings={"extract": 0.1, "match": 0.05, "pnp": 0.01},
                                   peak_memory_mb=200.0 + i, cam_from_world=random_pose(rng),
                                   fold="f0"))
    # an exact pose (error 0) must not break the log-scale plot
    out.append(QueryResult("exact.png", True, 0.0, 0.0, 0.1, inliers=500,
                           cam_from_world=Pose.identity()))
    return out


def check_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    assert w > 200 and h > 100 and len(data) > 5000


def test_write_report(tmp_path, results):
    s = summarize(results, thresholds_for("indoor"))
    meta = {"scene": "chess", "method": "sift+pnp", "split": "official", "preset": "indoor"}
    paths = write_report(tmp_path / "out", results, s, config={"k": 3, "path": tmp_path},
                         versions=FAKE_VERSIONS, meta=meta)
    for name in ("results.json", "report.md", "error_cdf.png", "poses.txt"):
        assert (tmp_path / "out" / name).is_file()
    assert set(paths) == {"json", "markdown", "poses", "cdf"}
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp left

    def no_constants(c):
        raise ValueError(f"non-standard JSON constant {c}")
    doc = json.loads((tmp_path / "out" / "results.json").read_text(), parse_constant=no_constants)
    assert set(doc) >= {"queries", "summary", "config", "versions", "meta"}
    assert set(doc["meta"]) >= {"scene", "method", "split", "preset", "date"} and doc["meta"]["date"]
    assert doc["versions"] == FAKE_VERSIONS and doc["config"]["path"] == str(tmp_path)
    assert len(doc["queries"]) == len(results)
    for q, r in zip(doc["queries"], results):
        assert set(q) >= {"name", "success", "translation_error", "rotation_error", "seconds",
                          "inliers", "reason"}
        assert q["name"] == r.name and q["success"] == r.success
        if r.success:
            assert q["translation_error"] == pytest.approx(r.translation_error)
        else:
            assert q["translation_error"] is None and q["rotation_error"] is None
    assert doc["summary"]["failures"] == 2 and doc["summary"]["queries"] == len(results)

    # read back
    back, _ = read_results(tmp_path / "out" / "results.json")
    assert [b.name for b in back] == [r.name for r in results]
    assert math.isinf(back[2].translation_error)
    assert np.allclose(back[0].cam_from_world.matrix(), results[0].cam_from_world.matrix())

    # Markdown: one row per query in the per-query table
    md = (tmp_path / "out" / "report.md").read_text()
    per_query = md.split("## Queries")[1]
    rows = [ln for ln in per_query.splitlines() if ln.startswith("| ")][1:]   # minus header
    assert len(rows) == len(results)
    assert "median t (cm)" in md and "recall 5cm/5°" in md and "extract" in md
    assert "too few inliers \\| pnp" in md     # pipes escaped

    poses = read_pose_file(tmp_path / "out" / "poses.txt")
    assert set(poses) == {r.name for r in results if r.success}

    check_png(tmp_path / "out" / "error_cdf.png")


def test_all_failed_report_is_valid_json(tmp_path):
    results = [QueryResult(f"q{i}", False, reason="no matches") for i in range(3)]
    s = summarize(results, thresholds_for("relative", 3.0))
    write_report(tmp_path, results, s, versions=FAKE_VERSIONS,
                 meta={"preset": "relative", "scene_scale": 3.0})
    doc = json.loads((tmp_path / "results.json").read_text(),
                     parse_constant=lambda c: pytest.fail(c))
    assert doc["summary"]["median_translation_error"] is None
    assert (tmp_path / "poses.txt").read_text() == ""
    assert "% of scale" in (tmp_path / "report.md").read_text()
    check_png(tmp_path / "error_cdf.png")


def test_to_json_has_no_inf():
    r = [QueryResult("a", False)]
    doc = to_json(r, summarize(r, [(1, 1)]), {}, {}, {"scene": "x"})
    text = json.dumps(doc, allow_nan=False)
    assert json.loads(text)["queries"][0]["translation_error"] is None


def test_pose_file_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    poses = {f"db/img_{i:03d}.jpg": random_pose(rng) for i in range(20)}
    poses["name with spaces.jpg"] = random_pose(rng)
    path = write_pose_file(tmp_path / "poses.txt", poses)
    back = read_pose_file(path)
    assert list(back) == list(poses)
    for k, p in poses.items():
        assert np.abs(back[k].R - p.R).max() < 1e-9
        assert np.abs(back[k].t - p.t).max() < 1e-9
    first = path.read_text().splitlines()[0].split()
    assert len(first) == 8 and first[0] == "db/img_000.jpg"
    q = np.array([float(v) for v in first[1:5]])
    assert np.allclose(quat_to_rotmat(q), poses["db/img_000.jpg"].R)   # w first, cam_from_world
    assert np.allclose([float(v) for v in first[5:]], poses["db/img_000.jpg"].t)


@pytest.mark.parametrize("line", ["a.jpg 1 0 0 0 1 2", "a.jpg 1 0 0 0 1 2 x",
                                  "a.jpg 0 0 0 0 1 2 3", "a.jpg 1 0 0 0 1 2 nan"])
def test_pose_file_malformed_line(tmp_path, line):
    path = tmp_path / "bad.txt"
    path.write_text("# comment\nok.jpg 1 0 0 0 0 0 0\n\n" + line + "\n")
    with pytest.raises(DataError, match=r"bad\.txt:4"):
        read_pose_file(path)


def test_pose_file_missing(tmp_path):
    with pytest.raises(DataError, match="no such"):
        read_pose_file(tmp_path / "nope.txt")


def test_markdown_table():
    rows = [{"scene": "chess", "median t": 0.0123, "recall": 0.5},
            {"scene": "fire|x", "median t": math.inf, "extra": None}]
    md = markdown_table(rows)
    lines = md.strip().splitlines()
    assert lines[0] == "| scene | median t | recall | extra |"
    assert lines[1].count("|") == 5 and "---:" in lines[1]
    assert len(lines) == 4
    assert "fire\\|x" in lines[3] and "inf" in lines[3] and "| - |" in lines[3]
    assert markdown_table([]) == ""


def test_plot_several_methods(tmp_path, results):
    half = results[: len(results) // 2]
    path = plot_error_cdfs({"A": results, "B": half, "none": [QueryResult("x", False)]},
                           tmp_path / "cdf.png", thresholds_for("outdoor"))
    check_png(path)


def test_versions():
    v = versions()
    for k in ("vloc", "python", "numpy", "opencv", "pycolmap", "poselib", "faiss", "torch"):
        assert k in v
    assert v["vloc"] and v["numpy"] == np.__version__


def test_failure_summary_groups_reasons_by_wording(results):
    from vloc.evaluation.report import failure_summary
    fail = [QueryResult(f"q{i}.png", False, math.inf, math.inf, 0.1, reason=reason) for i, reason in enumerate([
        "too few inliers (10 of 1200 matches, need 40)", "too few inliers (12 of 900 matches, need 40)",
        "image not found: q2.png", "too few inliers (9 of 1200 matches, need 40)", None, "no depth", "blur"])]
    lines = failure_summary(results + fail)
    assert lines == ["3 x too few inliers (10 of 1200 matches, need 40) (e.g. q0.png)",
                     "2 x too few inliers | pnp (e.g. seq/frame 2.png)",
                     "1 x image not found: q2.png (e.g. q2.png)", "3 x other reasons"]
    assert failure_summary(results[:2]) == []                           # no failure, no line
    assert failure_summary(fail[4:5]) == ["1 x no reason given (e.g. q4.png)"]
