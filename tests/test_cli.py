"""The `vloc` command end to end on real data (templeRing: small, exact poses)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vloc.cli import EXIT_SOME_FAILED, main
from vloc.evaluation import read_pose_file
from vloc.geometry import pose_errors

@pytest.fixture(scope="module")
def temple_map(temple, tmp_path_factory):
    out = tmp_path_factory.mktemp("maps") / "temple"
    assert main(["map", str(temple.root), "--split", "odd-even", "-o", str(out), "-q"]) == 0
    return out


def test_info(shared_data, capsys):
    assert main(["info", str(shared_data / "strecha/fountain-P11")]) == 0
    out = capsys.readouterr().out
    assert "strecha" in out and "frames: 11" in out and "with pose: 11" in out
    assert main(["info", str(shared_data / "tum_fr3_long_office_household"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "tum" and info["with_depth"] == 16 and "alternate-seconds" in info["splits"]


def test_map_manifest(temple_map):
    manifest = json.loads((temple_map / "manifest.json").read_text())
    assert manifest["format"] == "vloc-map" and manifest["method"] == "structure"
    assert manifest["stats"]["images"] == 10 and manifest["stats"]["points"] > 500
    assert manifest["source"]["split"] == "odd-even"
    assert set(manifest["files"]) >= {"points.h5", "features.h5", "model/points3D.bin"}


def test_localize_known_and_unknown_focal(temple, temple_map, tmp_path, capsys):
    queries = [f for f in temple.split("odd-even")[0].query][:3]
    cam = queries[0].camera
    poses = tmp_path / "poses.txt"
    argv = ["localize", str(temple_map), *[str(f.image_path) for f in queries],
            "--camera", str(cam), "-o", str(poses)]
    assert main(argv) == 0
    est = read_pose_file(poses)
    for f in queries:
        t, r = pose_errors(est[f.image_path.name], f.cam_from_world)
        assert t < 0.005 and r < 0.5, (f.name, t, r)
    # unknown focal length: estimated, and the pose is still good
    js = tmp_path / "q.json"
    assert main(["localize", str(temple_map), str(queries[1].image_path), "--json", str(js)]) == 0
    rec = json.loads(js.read_text())[0]
    f_est = float(rec["estimated_camera"].split()[3])
    assert abs(f_est - cam.fx) / cam.fx < 0.03
    assert np.linalg.norm(np.array(rec["center"]) - queries[1].cam_from_world.center) < 0.02


def _with_focal_35mm(src: Path, dst: Path, f35: int | None) -> Path:
    """A copy of image `src` whose EXIF says the 35 mm equivalent focal length `f35`."""
    from PIL import Image
    with Image.open(src) as im:
        exif = im.getexif()
        if f35 is not None:
            exif.get_ifd(0x8769)[0xA405] = f35
        im.save(dst, exif=exif, quality=95)
    return dst


def test_localize_with_the_exif_focal_length(temple, temple_map, tmp_path, capsys):
    """`--camera exif`: templeRing's focal 1520.4 px at 640 x 480 is 82.2 mm in 35 mm
    terms; EXIF's whole 82 mm gives 1516.1 px, and the pose is still good. An image
    without the tag fails with the reason, the others go on."""
    q = temple.split("odd-even")[0].query[1]
    with_tag = _with_focal_35mm(q.image_path, tmp_path / "tagged.jpg", 82)
    bare = _with_focal_35mm(q.image_path, tmp_path / "bare.jpg", None)
    js = tmp_path / "q.json"
    argv = ["localize", str(temple_map), str(with_tag), str(bare), "--camera", "exif", "--json", str(js)]
    assert main(argv) == EXIT_SOME_FAILED
    good, bad = json.loads(js.read_text())
    assert good["success"] and good["camera"] == "SIMPLE_PINHOLE 640 480 1516.06 320 240"
    assert np.linalg.norm(np.array(good["center"]) - q.cam_from_world.center) < 0.01
    assert not bad["success"] and "has no EXIF focal length" in bad["reason"]
    assert "bare.jpg: FAILED" in capsys.readouterr().out


def test_localize_a_folder_of_images(temple, temple_map, tmp_path, capsys):
    """A folder stands for its images, sorted by name; two images of one name with -o
    clash in the pose file and are refused."""
    queries = [f for f in temple.split("odd-even")[0].query][:2]
    folder = tmp_path / "queries"
    folder.mkdir()
    for f in queries:
        (folder / f.image_path.name).symlink_to(f.image_path)
    (folder / "notes.txt").write_text("not an image")
    poses = tmp_path / "poses.txt"
    assert main(["localize", str(temple_map), str(folder), "--camera", str(queries[0].camera), "-o", str(poses)]) == 0
    est = read_pose_file(poses)
    assert sorted(est) == sorted(f.image_path.name for f in queries)
    for f in queries:
        assert pose_errors(est[f.image_path.name], f.cam_from_world)[0] < 0.005
    capsys.readouterr()
    assert main(["localize", str(temple_map), str(folder), str(queries[0].image_path), "-o", str(poses)]) == 2
    assert f"two query images are named {queries[0].image_path.name}" in capsys.readouterr().err


def test_evaluate_with_map_and_report(temple, temple_map, tmp_path, capsys):
    report = tmp_path / "report"
    assert main(["evaluate", str(temple_map), str(temple.root), "--split", "odd-even",
                 "--report", str(report), "-q"]) == 0
    doc = json.loads((report / "results.json").read_text())
    assert len(doc["queries"]) == 9
    assert {"name", "success", "translation_error", "rotation_error", "seconds", "inliers", "reason"} \
        <= set(doc["queries"][0])
    assert {"queries", "summary", "config", "versions"} <= set(doc)
    assert doc["summary"]["recall"]["5cm/5°"] == 1.0
    for name in ("report.md", "error_cdf.png", "poses.txt"):
        assert (report / name).stat().st_size > 100


def test_evaluate_builds_maps_and_writes_json_contract(temple, tmp_path):
    out = tmp_path / "r.json"
    assert main(["evaluate", str(temple.root), "--split", "odd-even", "--method", "structure",
                 "--json", str(out), "-q"]) == 0
    doc = json.loads(out.read_text())
    assert doc["meta"]["method"] == "structure" and doc["summary"]["queries"] == 9
    assert doc["summary"]["median_translation_error"] < 0.002        # metres (hloc: 0.08 cm)
    assert all(q["success"] for q in doc["queries"])


def test_console_script_runs_without_traceback(tmp_path):
    exe = Path(sys.executable).with_name("vloc")
    r = subprocess.run([str(exe), "info", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "no such file or directory" in r.stderr



def test_library_warnings_print_as_one_line():
    # in a child process: pytest records warnings instead of printing them
    code = ("import warnings, vloc.cli as cli\n"
            "def warn(args):\n"
            "    warnings.warn('3 frames without depth are left out', stacklevel=2)\n"
            "    return 0\n"
            "cli.cmd_info = warn\n"
            "before = warnings.formatwarning\n"
            "assert cli.main(['info', 'anything']) == 0\n"
            "assert warnings.formatwarning is before\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "vloc: warning: 3 frames without depth are left out\n"


def test_a_closed_pipe_stops_quietly(shared_data):
    """`vloc info ... | head -1`: the reader goes away; vloc stops with 141 (SIGPIPE's
    shell code) and prints nothing on stderr."""
    code = "import sys; from vloc.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "info", str(shared_data / "tum_fr3_long_office_household")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()                                  # the reader is gone before vloc writes
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err == b"", err.decode()

