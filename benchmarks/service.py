"""What the HTTP service adds to a query: the same queries localized by the Python
localizer directly and through `vloc serve` (a server in this process, a client over
loopback), each query's wall time, median over the queries. Also the pose difference
between the two (zero: the server decodes the same bytes the direct call reads).

    python benchmarks/service.py [--scene strecha/fountain-P11 --split odd-even] [--repeat 3]

Prints a table and writes JSON (default benchmarks/out/service/<scene>.json).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np


def _post(url: str, data: bytes, params: dict) -> dict:
    req = urllib.request.Request(f"{url}/localize?{urllib.parse.urlencode(params)}", data=data)
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--scene", default="strecha/fountain-P11")
    ap.add_argument("--split", default="odd-even")
    ap.add_argument("--repeat", type=int, default=3, help="passes over the queries (default 3)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/service"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import vloc
    from vloc.imageio import decode_image
    from vloc.localizers import Query
    from vloc.service import make_server

    scene = vloc.Scene.load(args.data / args.scene)
    fold = scene.split(args.split)[0]
    map_dir = args.out / "maps" / scene.name
    if not (map_dir / "manifest.json").is_file():
        vloc.build_map(list(fold.mapping), map_dir, overwrite=True)
    server = make_server(map_dir, port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    localizer = server.localizer
    rows = {"direct": [], "http": []}
    centre_diff = []
    for _ in range(args.repeat):
        for q in fold.query:
            data = q.image_path.read_bytes()
            t = time.perf_counter()
            direct = localizer.localize(Query(q.name, image=decode_image(data), camera=q.camera))
            rows["direct"].append(time.perf_counter() - t)
            t = time.perf_counter()
            answer = _post(server.url, data, {"camera": str(q.camera), "name": q.name})
            rows["http"].append(time.perf_counter() - t)
            if direct.success and answer["success"]:
                centre_diff.append(float(np.linalg.norm(direct.cam_from_world.center - np.array(answer["center"]))))
    server.shutdown()
    server.server_close()
    direct_ms, http_ms = (1000 * float(np.median(rows[k])) for k in ("direct", "http"))
    result = {
        "scene": scene.name, "split": args.split, "queries": len(fold.query), "repeat": args.repeat,
        "median_direct_ms": direct_ms, "median_http_ms": http_ms, "overhead_ms": http_ms - direct_ms,
        "max_centre_difference": max(centre_diff, default=None),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "machine": platform.node(), "cpus": len(__import__("os").sched_getaffinity(0)),
        "date": time.strftime("%Y-%m-%d"),
    }
    print("| scene | queries x passes | direct median | HTTP median | overhead | max centre difference |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| {scene.name} | {len(fold.query)} x {args.repeat} | {direct_ms:.0f} ms | {http_ms:.0f} ms | "
          f"{http_ms - direct_ms:.1f} ms | {result['max_centre_difference']} |")
    out = args.json or args.out / f"{scene.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
