"""The map on disk: a versioned directory with a manifest (format version, config,
source, checksums), written under a temporary name and renamed when complete."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import MapError

MAP_FORMAT = "vloc-map"
MAP_VERSION = 1
MANIFEST = "manifest.json"


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextmanager
def atomic_map_dir(out: Path, overwrite: bool = False):
    """Yields a temporary directory next to `out`; on success it is renamed to `out`.
    On any error the temporary directory is removed and `out` is left untouched."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise MapError(f"output exists: {out} (use --overwrite to replace it)")
    if out.exists() and not _replaceable(out):
        raise MapError(f"output {out} exists and is neither a vloc map nor an empty folder: not replaced")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replaceable(out: Path) -> bool:
    """--overwrite replaces a vloc map or an empty folder, nothing else (a mistyped -o
    must not delete a folder of photos)."""
    if not out.is_dir():
        return False
    if not any(out.iterdir()):
        return True
    try:
        return json.loads((out / MANIFEST).read_text()).get("format") == MAP_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_manifest(map_dir: Path, method: str, config: dict, source: dict, stats: dict,
                   known: dict[str, dict] | None = None) -> dict:
    """`known`: {relative path: {"bytes", "sha256"}} of files copied from a checked map
    (e.g. a structure map linked into a hierarchical one): not hashed again."""
    files = sorted(p for p in Path(map_dir).rglob("*") if p.is_file() and p.name != MANIFEST)
    known = known or {}

    def entry(p: Path) -> dict:
        rel, size = str(p.relative_to(map_dir)), p.stat().st_size
        if rel in known and known[rel].get("bytes") == size:
            return {"bytes": size, "sha256": known[rel]["sha256"]}
        return {"bytes": size, "sha256": sha256(p)}

    manifest = {
        "format": MAP_FORMAT, "version": MAP_VERSION, "method": method,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config, "source": source, "stats": stats,
        "files": {str(p.relative_to(map_dir)): entry(p) for p in files},
    }
    (map_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def read_manifest(map_dir: Path, verify: str = "size") -> dict:
    """Read and check a map's manifest. verify: 'none' | 'size' | 'sha256'."""
    map_dir = Path(map_dir)
    if not map_dir.is_dir():
        raise MapError(f"map not found: {map_dir}")
    path = map_dir / MANIFEST
    if not path.is_file():
        raise MapError(f"not a vloc map (no {MANIFEST}): {map_dir}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise MapError(f"corrupt map manifest {path}: {e}") from None
    if manifest.get("format") != MAP_FORMAT:
        raise MapError(f"not a vloc map: {map_dir}")
    if manifest.get("version") != MAP_VERSION:
        raise MapError(f"map {map_dir} has format version {manifest.get('version')}, "
                       f"this vloc reads version {MAP_VERSION}: rebuild the map")
    for rel, info in manifest.get("files", {}).items():
        p = map_dir / rel
        if not p.is_file():
            raise MapError(f"map {map_dir} is incomplete: {rel} is missing")
        if verify in ("size", "sha256") and p.stat().st_size != info["bytes"]:
            raise MapError(f"map {map_dir} is truncated or modified: {rel} has the wrong size")
        if verify == "sha256" and sha256(p) != info["sha256"]:
            raise MapError(f"map {map_dir} is corrupt: checksum of {rel} does not match")
    return manifest
