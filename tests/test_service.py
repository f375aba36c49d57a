"""`vloc serve`: the HTTP service answers as the localizer does, and turns every bad
request into a 4xx with a one-line error while it keeps serving."""
import json
import threading
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

import vloc
from vloc.localizers import Query
from vloc.service import make_server


@pytest.fixture(scope="module")
def server(temple, tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "map"
    vloc.build_map(list(temple.split("odd-even")[0].mapping)[:5], out, progress=False)
    srv = make_server(out, port=0, max_mb=1.0, quiet=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _request(srv, path, body=None, method=None, **params):
    url = srv.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_health(server):
    status, body = _request(server, "/health")
    assert status == 200 and body["status"] == "ok" and body["method"] == "structure"


def test_localize_matches_the_localizer(server, temple):
    """The pose over HTTP is the localizer's own for the same pixels, bit for bit; the
    focal length is estimated when no camera is sent."""
    from vloc.imageio import decode_image
    q = temple.split("odd-even")[0].query[1]
    data = q.image_path.read_bytes()
    direct = server.localizer.localize(Query(q.name, image=decode_image(data), camera=q.camera))
    status, body = _request(server, "/localize", data, name=q.name, camera=str(q.camera))
    assert status == 200 and body["success"] and body["name"] == q.name
    assert body["inliers"] == direct.inliers > 50
    assert np.array_equal(body["q_wxyz"], direct.cam_from_world.q.tolist())
    assert np.array_equal(body["t"], direct.cam_from_world.t.tolist())
    assert np.linalg.norm(np.array(body["center"]) - q.cam_from_world.center) < 0.005
    status, body = _request(server, "/localize", data)                     # focal estimated
    assert status == 200 and body["success"] and body["camera"].startswith("SIMPLE_PINHOLE 640 480")
    assert float(body["camera"].split()[3]) == pytest.approx(q.camera.fx, rel=0.05)


def test_a_failed_localization_is_an_answer(server):
    from vloc._libs import cv2
    _, black = cv2.imencode(".png", np.zeros((480, 640), np.uint8))
    status, body = _request(server, "/localize", black.tobytes())
    assert status == 200 and body["success"] is False and body["reason"]
    assert "q_wxyz" not in body


@pytest.mark.parametrize("path,body,method,params,status,needle", [
    ("/localize", b"not an image", None, {}, 400, "cannot decode the posted image"),
    ("/localize", b"", None, {}, 400, "is empty"),
    ("/localize", None, "GET", {}, 405, "POST the image"),
    ("/nowhere", b"x", None, {}, 404, "no such endpoint"),
    ("/localize", b"x", None, {"camera": "PINHOL 640 480 5 5 320 240"}, 400, "unknown camera model"),
    ("/localize", b"x", None, {"prior": "1,2"}, 400, "bad prior"),
    ("/localize", b"x", None, {"focal": "500"}, 400, "unknown parameter(s) focal"),
    ("/localize", b"x" * (2 << 20), None, {}, 413, "larger than the limit"),
])
def test_bad_requests(server, temple, path, body, method, params, status, needle):
    got, answer = _request(server, path, body, method, **params)
    assert got == status and needle in answer["error"] and "\n" not in answer["error"], answer
    assert _request(server, "/health")[0] == 200                          # still serving


def test_camera_from_the_posted_images_exif(server, temple):
    """camera=exif reads the focal length from the posted bytes (templeRing: 82 mm in
    35 mm terms, 1516.1 px against the calibrated 1520.4); without the tag, a 400."""
    import io

    from PIL import Image
    q = temple.split("odd-even")[0].query[1]
    buf = io.BytesIO()
    with Image.open(q.image_path) as im:
        exif = im.getexif()
        exif.get_ifd(0x8769)[0xA405] = 82
        im.save(buf, "JPEG", exif=exif, quality=95)
    status, body = _request(server, "/localize", buf.getvalue(), camera="exif")
    assert status == 200 and body["success"] and body["camera"] == "SIMPLE_PINHOLE 640 480 1516.06 320 240"
    assert np.linalg.norm(np.array(body["center"]) - q.cam_from_world.center) < 0.01
    status, body = _request(server, "/localize", q.image_path.read_bytes(), camera="exif", name="q.png")
    assert status == 400 and "the posted image 'q.png' has no EXIF focal length" in body["error"]


def test_wrong_size_for_the_camera(server, temple):
    q = temple.frames[0]
    status, body = _request(server, "/localize", q.image_path.read_bytes(), camera=str(q.camera.scaled(0.5)))
    assert status == 400 and "but the camera says" in body["error"]


def test_vloc_serve_command(server, tmp_path):
    """`vloc serve MAP --port 0` prints its address, answers, stops on SIGTERM (as
    systemd and docker stop it; SIGINT may be ignored in a background job) with exit 0;
    a port in use is one line and exit 4."""
    import re
    import signal
    import subprocess
    import sys
    from pathlib import Path
    exe = Path(sys.executable).with_name("vloc")
    proc = subprocess.Popen([str(exe), "serve", str(server.map_dir), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving ") and "(structure) on http://127.0.0.1:" in line, line
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)", line).group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as r:
            assert json.loads(r.read())["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err
    busy = subprocess.run([str(exe), "serve", str(server.map_dir), "--port", str(server.server_address[1])],
                          capture_output=True, text=True, timeout=60)
    assert busy.returncode == 4 and busy.stderr.count("\n") == 1 and "in use" in busy.stderr, busy.stderr
