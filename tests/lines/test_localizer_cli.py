"""Line-cloud maps, the line-cloud localizer, `vloc evaluate --method lines` and
`vloc privacy` on real images (templeRing odd-even: 10 mapping, 9 query images)."""
import json

import numpy as np
import pytest

import vloc
from vloc.cli import main
from vloc.geometry import pose_errors
from vloc.lines.mapping import LineMapConfig, convert_structure_map
from vloc.localizers import Query
from vloc.localizers.lines import LineCloudLocalizer
from vloc.localizers.registry import get_method
from vloc.localizers.structure import query_from_frame
from vloc.maps.points import read_points


@pytest.fixture(scope="module")
def fold(temple):
    return temple.split("odd-even")[0]


@pytest.fixture(scope="module")
def structure_map(fold, tmp_path_factory):
    out = tmp_path_factory.mktemp("lines") / "structure"
    vloc.build_map(list(fold.mapping), out, progress=False)
    return out


@pytest.fixture(scope="module")
def line_map(structure_map):
    out = structure_map.parent / "lines"
    convert_structure_map(structure_map, out, LineMapConfig(seed=0))
    return out


def test_line_map_localizes_like_the_point_map(fold, structure_map, line_map):
    lines, points = vloc.load_localizer(line_map), vloc.load_localizer(structure_map)
    assert isinstance(lines, LineCloudLocalizer)
    errs_l, errs_p = [], []
    for f in fold.query:
        q = query_from_frame(f)
        el, ep = lines.localize(q), points.localize(q)
        assert el.success, el.reason
        assert el.inliers >= 100 and el.correspondences >= el.inliers
        assert set(el.timings) == {"read", "features", "matching", "pose"}
        assert el.timings["pose"] < 1.5 and el.details["iterations"] >= 50
        errs_l.append(pose_errors(el.cam_from_world, f.cam_from_world))
        errs_p.append(pose_errors(ep.cam_from_world, f.cam_from_world))
    el, ep = np.median(errs_l, axis=0), np.median(errs_p, axis=0)
    # measured: lines 0.62 mm / 0.062 deg, points 0.61 mm / 0.063 deg (the temple is ~15 cm)
    assert el[0] < 0.0015 and el[1] < 0.15
    assert el[0] <= 2 * ep[0] and el[1] <= 2 * ep[1]
    assert np.max(errs_l, axis=0)[1] < 0.5


def test_line_map_needs_intrinsics_and_is_checked(fold, line_map, structure_map):
    loc = vloc.load_localizer(line_map)
    f = fold.query[0]
    est = loc.localize(Query(f.name, image_path=f.image_path, camera=None))
    assert not est.success and "intrinsics" in est.reason
    with pytest.raises(vloc.errors.MapError, match="built for method 'structure', not 'lines'"):
        LineCloudLocalizer.load(structure_map)


def test_build_lines_method(fold, tmp_path):
    m = get_method("lines")
    assert m.config_type is LineMapConfig and m.name == "lines"
    manifest = vloc.build_map(list(fold.mapping)[:4], tmp_path / "m", LineMapConfig(lifting="paired", seed=2),
                              method="lines", progress=False)
    assert manifest["method"] == "lines" and manifest["stats"]["lifting"] == "paired"
    assert manifest["config"]["map"]["lifting"] == "paired" and manifest["config"]["extractor"]["name"]
    assert sorted(manifest["files"]) == ["lines.h5"]
    assert manifest["stats"]["lines"] == (manifest["stats"]["points_lifted"] + 1) // 2
    with pytest.raises(vloc.errors.VlocError, match="lifting"):
        LineMapConfig(lifting="cones")


def test_evaluate_method_lines_writes_the_common_json(temple, line_map, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(line_map), str(temple.root), "--split", "odd-even", "--method", "lines",
                 "--json", str(out), "-q"]) == 0
    doc = json.loads(out.read_text())
    assert set(doc) == {"queries", "summary", "config", "versions", "meta"}
    assert doc["meta"]["method"] == "lines" and doc["summary"]["queries"] == 9
    assert doc["summary"]["failures"] == 0 and doc["summary"]["recall"]["5cm/5°"] == 1.0
    assert doc["summary"]["median_translation_error"] < 0.0015
    assert doc["config"]["localizer"]["ransac"]["max_error"] == 3.0
    assert all(q["details"]["lines"] == doc["queries"][0]["details"]["lines"] for q in doc["queries"])
    assert "| lines |" in capsys.readouterr().out


def test_privacy_command(temple, structure_map, tmp_path, capsys):
    out = tmp_path / "priv"
    assert main(["privacy", str(temple.root), "--split", "odd-even", "--structure-map", str(structure_map),
                 "-o", str(out), "--sparsity", "100", "25", "--max-queries", "3", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "no 3D point stored" in printed and "| 25 |" in printed
    doc = json.loads((out / "privacy.json").read_text())
    assert (out / "privacy.png").stat().st_size > 10_000
    assert doc["leak_check"]["matches"] == 0 and doc["files"] == ["lines.h5", "manifest.json"]
    assert doc["points"] == len(read_points(structure_map / "points.h5")) == doc["lines"]
    full, quarter = doc["sparsity"]
    assert full["sparsity"] == 100 and quarter["lines"] == round(0.25 * full["lines"])
    # the full cloud gives its points away more precisely than a quarter of it (measured 6.6 vs 9.4 mm)
    assert full["attack"]["median_error"] < 0.01 and quarter["attack"]["median_error"] > full["attack"]["median_error"]
    assert full["attack"]["share_metric"]["0.05"] > 0.8 > full["attack"]["anchor_baseline"]["share_metric"]["0.05"]
    assert full["localization"]["queries"] == 3 and full["localization"]["recall"] == 1.0
    # wrong use: exit 2, one line
    assert main(["privacy", "-o", str(tmp_path / "x")]) == 2
    assert main(["privacy", str(temple.root), "-o", str(tmp_path / "x")]) == 2
    assert "--split is needed" in capsys.readouterr().err
