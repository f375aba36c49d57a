"""Bad input: a clear one-line error (exit 2) or a failed estimate with a reason;
never a traceback, never a half-written map."""
import shutil

import numpy as np
import pytest

import vloc
from vloc._libs import cv2
from vloc.cli import main
from vloc.errors import DataError, MapError
from vloc.localizers import Query

@pytest.fixture(scope="module")
def small_map(temple, tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "map"
    frames = [f for f in temple.split("odd-even")[0].mapping][:5]
    vloc.build_map(frames, out, progress=False)
    return out


def _one_line_error(capsys, code, argv, needle):
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err
    assert needle in err, err


def test_unknown_format_and_missing_path(tmp_path, capsys):
    _one_line_error(capsys, 2, ["info", str(tmp_path)], "unknown dataset format")
    _one_line_error(capsys, 2, ["info", str(tmp_path / "missing")], "no such file")


def test_unknown_split(temple, capsys):
    _one_line_error(capsys, 2, ["evaluate", str(temple.root), "--split", "weird", "-q"], "unknown split")


def test_bad_camera_strings(small_map, temple, capsys):
    img = str(temple.frames[1].image_path)
    _one_line_error(capsys, 2, ["localize", str(small_map), img, "--camera", "PINHOLE 640 480 0 0 320 240"],
                    "focal length must be positive")
    _one_line_error(capsys, 2, ["localize", str(small_map), img, "--camera", "PINHOLE 640 480 nan 5 320 240"],
                    "finite")
    _one_line_error(capsys, 2, ["localize", str(small_map), img, "--camera", "PINHOL 640 480 5 5 320 240"],
                    "unknown camera model")


def test_bad_images_fail_the_query_with_a_reason(small_map, temple, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    black = tmp_path / "black.png"
    cv2.imwrite(str(black), np.zeros((480, 640), np.uint8))
    cam = str(temple.frames[0].camera)
    code = main(["localize", str(small_map), str(corrupt), str(empty), str(tmp_path / "missing.jpg"),
                 str(black), "--camera", cam])
    out = capsys.readouterr().out
    assert code == 3
    assert "cannot decode image" in out and "image file is empty" in out and "image not found" in out
    assert out.count("FAILED") == 4 and "no 2D-3D match" in out


def test_wrong_image_size_for_camera(small_map, temple):
    loc = vloc.load_localizer(small_map)
    cam = temple.frames[0].camera.scaled(0.5)
    with pytest.raises(DataError, match="but the camera says"):
        loc.localize(Query("q", image_path=temple.frames[1].image_path, camera=cam))


def test_too_few_matches_is_a_failed_estimate(small_map, temple):
    loc = vloc.load_localizer(small_map)
    rng = np.random.default_rng(0)
    noise = (rng.random((480, 640)) * 255).astype(np.uint8)
    est = loc.localize(Query("noise", image=noise, camera=temple.frames[0].camera))
    assert not est.success and est.cam_from_world is None
    assert "inliers" in est.reason or "match" in est.reason


def test_empty_truncated_and_foreign_maps(small_map, tmp_path, capsys):
    img = "x.jpg"
    _one_line_error(capsys, 2, ["localize", str(tmp_path), img], "not a vloc map")
    bad = tmp_path / "trunc"
    shutil.copytree(small_map, bad)
    p = bad / "points.h5"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    _one_line_error(capsys, 2, ["localize", str(bad), img], "truncated")
    gone = tmp_path / "gone"
    shutil.copytree(small_map, gone)
    (gone / "points.h5").unlink()
    with pytest.raises(MapError, match="missing"):
        vloc.load_localizer(gone)
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(MapError, match="corrupt map manifest"):
        vloc.load_localizer(bad)


def test_failed_build_leaves_no_half_written_map(temple, tmp_path):
    frames = list(temple.split("odd-even")[0].mapping)[:4]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"garbage")
    frames[2] = frames[2].__class__(**{**frames[2].__dict__, "image_path": broken})
    out = tmp_path / "map"
    with pytest.raises(DataError, match="cannot decode image"):
        vloc.build_map(frames, out, progress=False)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [broken]      # no temporary directory left behind


def test_existing_output_needs_overwrite(small_map, temple, capsys):
    _one_line_error(capsys, 2, ["map", str(temple.root), "--split", "odd-even", "-o", str(small_map), "-q"],
                    "output exists")


def test_crash_while_writing_leaves_no_map(temple, tmp_path, monkeypatch):
    import vloc.maps.build as build

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(build, "write_points", boom)
    out = tmp_path / "map"
    with pytest.raises(OSError, match="disk full"):
        vloc.build_map(list(temple.split("odd-even")[0].mapping)[:3], out, progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_evaluate_refuses_a_map_that_contains_the_queries(temple, small_map, capsys):
    _one_line_error(capsys, 2, ["evaluate", str(small_map), str(temple.root), "--split", "even-odd", "-q"],
                    "are in the map")
    _one_line_error(capsys, 2, ["evaluate", str(small_map), str(temple.root), "--split", "leave-one-out", "-q"],
                    "folds but one map was given")


def test_lightglue_map_matcher_needs_learned_features(temple, tmp_path, capsys):
    _one_line_error(capsys, 2, ["map", str(temple.root), "-o", str(tmp_path / "m"), "--matcher", "lightglue", "-q"],
                    "'lightglue' needs a map built with aliked")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("method, toml, needle", [
    ("scr", '[map]\nsteps = "many"\n', "config option map.steps must be an integer, got 'many'"),
    ("scr", "steps = 1.5\n", "config option steps must be an integer, got 1.5"),
    ("scr-dsac", '[map.dsac]\nlr = "1e-3"\n', "config option map.dsac.lr must be a number, got '1e-3'"),
    ("scr-dsac", "[map]\ndsac = 3\n", "config option map.dsac must be a table ([map.dsac]), got 3"),
    ("forest", '[map]\ntrees = "two"\n', "config option map.trees must be an integer"),
    ("posenet", "[map]\naugment = 1\n", "config option map.augment must be true or false, got 1"),
    ("structure", "[map]\nfeature_options = 5\n", "config option map.feature_options must be a table"),
])
def test_config_values_of_the_wrong_type(tmp_path, capsys, method, toml, needle):
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    _one_line_error(capsys, 2, ["map", str(tmp_path), "--method", method, "--config", str(config),
                                "-o", str(tmp_path / "out")], needle)
    assert not (tmp_path / "out").exists()


def test_overwrite_replaces_a_map_or_an_empty_folder_only(tmp_path):
    """--overwrite must not delete what a mistyped -o points at."""
    from vloc.errors import MapError
    from vloc.maps.mapdir import atomic_map_dir
    old_map, empty, photos, a_file = (tmp_path / n for n in ("old_map", "empty", "photos", "file.txt"))
    old_map.mkdir()
    (old_map / "manifest.json").write_text('{"format": "vloc-map", "version": 1}')
    empty.mkdir()
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"not a map")
    a_file.write_text("x")
    for out in (old_map, empty):
        with atomic_map_dir(out, overwrite=True) as tmp:
            (tmp / "new").write_text("new")
        assert [p.name for p in out.iterdir()] == ["new"]
    for out in (photos, a_file):
        with pytest.raises(MapError, match="neither a vloc map nor an empty folder: not replaced"):
            with atomic_map_dir(out, overwrite=True):
                pass
    assert (photos / "holiday.jpg").read_bytes() == b"not a map" and a_file.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file.txt", "old_map", "photos"]


def test_demo_refuses_an_out_it_would_have_to_delete(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    _one_line_error(capsys, 2, ["demo", "--out", str(a_file), "-q"], "exists and is not a folder")
    (tmp_path / "mine" / "scene").mkdir(parents=True)
    (tmp_path / "mine" / "scene" / "data.txt").write_text("keep me")
    _one_line_error(capsys, 2, ["demo", "--out", str(tmp_path / "mine"), "-q"],
                    "is not a vloc synthetic scene: give another --out")
    assert (tmp_path / "mine" / "scene" / "data.txt").read_text() == "keep me"


@pytest.mark.parametrize("argv, needle", [
    (["localize", "MAP", "q.png", "-o", "DIR"], "-o DIR is a folder; give a file name"),
    (["localize", "MAP", "q.png", "--json", "DIR"], "--json DIR is a folder; give a file name"),
    (["evaluate", "MAP", "DATA", "--split", "all", "--json", "DIR"], "--json DIR is a folder"),
    (["evaluate", "MAP", "DATA", "--split", "all", "--report", "FILE"], "--report FILE is a file; give a folder"),
    (["privacy", "DATA", "--split", "all", "-o", "FILE"], "-o FILE is a file; give a folder"),
])
def test_output_paths_of_the_wrong_kind_fail_before_any_work(tmp_path, capsys, argv, needle):
    (tmp_path / "DIR").mkdir()
    (tmp_path / "FILE").write_text("keep")
    where = {"DIR": str(tmp_path / "DIR"), "FILE": str(tmp_path / "FILE"), "MAP": str(tmp_path / "no_map"),
             "DATA": str(tmp_path / "no_data")}
    _one_line_error(capsys, 2, [where.get(a, a) for a in argv], needle.replace("DIR", where["DIR"])
                    .replace("FILE", where["FILE"]))
    assert (tmp_path / "FILE").read_text() == "keep" and not any((tmp_path / "DIR").iterdir())


def test_a_refused_write_is_one_line(capsys, monkeypatch):
    """The system refusing a write (a folder in /proc, refused even to root) is exit 4
    and one line naming the path; VLOC_DEBUG=1 keeps the traceback."""
    out = "/proc/vloc-test-output"
    _one_line_error(capsys, 4, ["demo", "--out", out, "-q"], f"No such file or directory: {out}")
    monkeypatch.setenv("VLOC_DEBUG", "1")
    with pytest.raises(OSError):
        main(["demo", "--out", out, "-q"])
