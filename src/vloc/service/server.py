"""`vloc serve`: a localization service over HTTP, on the standard library alone.

The map is loaded once; each request localizes one image:

    POST /localize[?camera=MODEL+W+H+PARAMS...|exif][&prior=x,y[,z],radius][&name=q.jpg]
         body: the encoded image (JPEG, PNG, ...), as it is stored
    GET  /health   the map, its method and the version

Answers are JSON. A query that cannot be localized is still 200, with "success": false
and the reason; a request vloc cannot use is 4xx with {"error": "..."} (bad camera,
undecodable image, body too large). Ctrl-C or SIGTERM stops it cleanly (exit 0).
Queries are localized one at a time (the
localizer's extractor and torch threads are shared); /health answers meanwhile.
"""
from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..errors import VlocError

PARAMETERS = ("camera", "prior", "name")


class _RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class LocalizationServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, map_dir: Path, method: str, localizer, max_bytes: int, quiet: bool):
        super().__init__(address, _Handler)
        self.map_dir, self.method, self.localizer = map_dir, method, localizer
        self.max_bytes, self.quiet = max_bytes, quiet
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def info(self) -> dict:
        from .. import __version__
        return {"status": "ok", "map": str(self.map_dir), "method": self.method, "vloc": __version__}


class _Handler(BaseHTTPRequestHandler):
    server: LocalizationServer
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self._answer(self._get)

    def do_POST(self):
        self._answer(self._post)

    def _get(self, path: str, params: dict) -> dict:
        if path in ("/", "/health"):
            return self.server.info()
        if path == "/localize":
            raise _RequestError(405, "POST the image to /localize")
        raise _RequestError(404, f"no such endpoint {path}; try POST /localize or GET /health")

    def _post(self, path: str, params: dict) -> dict:
        if path != "/localize":
            raise _RequestError(404, f"no such endpoint {path}; try POST /localize or GET /health")
        from ..geometry.exif import camera_option, query_camera
        from ..imageio import decode_image
        from ..localizers import Query
        from ..localizers.prior import parse_prior
        name = params.get("name", "image")
        camera = camera_option(params.get("camera"))
        prior = parse_prior(params["prior"]) if "prior" in params else None
        body = self._body()
        image = decode_image(body, f"the posted image {name!r}")
        camera = query_camera(camera, body, f"the posted image {name!r}")
        t = time.perf_counter()
        with self.server.lock:
            est = self.server.localizer.localize(Query(name, image=image, camera=camera), prior)
        return {"name": name, **est.to_dict(), "seconds": time.perf_counter() - t}

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            raise _RequestError(411, "send the image as the request body, with a Content-Length")
        try:
            n = int(length)
        except ValueError:
            raise _RequestError(400, f"bad Content-Length {length!r}") from None
        if n > self.server.max_bytes:
            self._discard(n)
            raise _RequestError(413, f"image of {n} bytes is larger than the limit of {self.server.max_bytes}")
        return self.rfile.read(n)

    def _discard(self, n: int) -> None:
        """Read and drop a refused body (up to 1 GiB) so that the client, still sending,
        gets the answer rather than a broken pipe."""
        n = min(n, 2**30)
        while n > 0:
            chunk = self.rfile.read(min(n, 2**20))
            if not chunk:
                break
            n -= len(chunk)

    def handle_expect_100(self) -> bool:
        """Refuse a too large body before it is sent (curl asks first above 1 MiB)."""
        n = self.headers.get("Content-Length", "0")
        if n.isdigit() and int(n) > self.server.max_bytes:
            self._started = time.perf_counter()
            self._send(413, {"error": f"image of {n} bytes is larger than the limit of {self.server.max_bytes}"})
            return False
        return super().handle_expect_100()

    def _answer(self, handler) -> None:
        self._started = time.perf_counter()
        status, body = 200, None
        try:
            url = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            unknown = sorted(set(params) - set(PARAMETERS))
            if unknown:
                raise _RequestError(400, f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(PARAMETERS)}")
            body = handler(url.path, params)
        except _RequestError as e:
            status, body = e.status, {"error": str(e)}
        except VlocError as e:                       # the request's mistake: bad camera, image, prior
            status, body = 400, {"error": str(e)}
        except Exception as e:                       # vloc's own fault: say so, keep serving
            traceback.print_exc(file=sys.stderr)
            status, body = 500, {"error": f"internal error: {type(e).__name__}: {e}"}
        self._send(status, body)

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status in (411, 413):
                self.send_header("Connection", "close")    # a body left unread would be read as the next request
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):     # the client left: nothing to answer
            self.close_connection = True

    def log_request(self, code="-", size="-"):
        elapsed = time.perf_counter() - getattr(self, "_started", time.perf_counter())
        self.log_message('"%s" %s %.2f s', self.requestline, code, elapsed)

    def log_message(self, format, *args):
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


def make_server(map_dir, host: str = "127.0.0.1", port: int = 8000, max_mb: float = 64.0,
                quiet: bool = False) -> LocalizationServer:
    """A server for the map at `map_dir` (loaded now), bound but not yet serving
    (`serve_forever()`; port 0 picks a free port: see `.url`)."""
    from ..localizers.registry import map_method
    if max_mb <= 0:
        raise VlocError(f"--max-mb must be positive, got {max_mb}")
    method = map_method(map_dir)
    return LocalizationServer((host, port), Path(map_dir), method.name, method.load(map_dir),
                              int(max_mb * 2**20), quiet)


class _Stop(Exception):
    """SIGTERM (systemd, docker stop): stop serving cleanly."""


def _stop(signum, frame):
    raise _Stop


def serve(map_dir, host: str = "127.0.0.1", port: int = 8000, max_mb: float = 64.0, quiet: bool = False) -> None:
    """Serve until interrupted (Ctrl-C) or terminated (SIGTERM); either ends cleanly."""
    import signal
    server = make_server(map_dir, host, port, max_mb, quiet)
    info = server.info()
    previous = signal.signal(signal.SIGTERM, _stop)
    print(f"serving {info['map']} ({info['method']}) on {server.url}: POST an image to {server.url}/localize",
          flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
