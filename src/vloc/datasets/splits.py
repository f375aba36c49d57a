"""Generic splits of a scene into mapping and query frames.

- `official` / any name in `scene.official_splits`: the dataset's own split.
- `odd-even`: map the frames whose file-name number is odd, query the even ones.
- `even-odd`: the reverse.
- `every-K` (e.g. `every-5`): sorted by name, query every K-th frame starting
  with the first, map the rest.
- `leave-one-out`: one fold per frame; that frame is the query, the rest the map.
- `all`: every posed frame maps, no query (for map building only).
Only frames with a ground-truth pose take part in generic splits.
"""
from __future__ import annotations

import re

from ..errors import DataError
from .scene import Fold, Scene

GENERIC_SPLITS = ("odd-even", "even-odd", "every-K", "leave-one-out", "all")


def frame_number(name: str) -> int:
    """The last integer in a frame's file name (without extension)."""
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    nums = re.findall(r"\d+", stem)
    if not nums:
        raise DataError(f"frame {name!r} has no number in its name; use another split")
    return int(nums[-1])


def make_split(scene: Scene, name: str) -> list[Fold]:
    if name in scene.official_splits:
        mapping, query = scene.official_splits[name]
        return [Fold(tuple(scene.subset(mapping)), tuple(scene.subset(query)), name)]
    if name == "official":
        if len(scene.official_splits) == 1:
            return make_split(scene, next(iter(scene.official_splits)))
        raise DataError(f"scene {scene.name} ({scene.format}) has no official split; "
                        f"try one of {', '.join(available_splits(scene))}")
    frames = sorted(scene.posed_frames, key=lambda f: f.name)
    if not frames:
        raise DataError(f"scene {scene.name} has no frame with a ground-truth pose")
    if name in ("odd-even", "even-odd"):
        odd = [f for f in frames if frame_number(f.name) % 2 == 1]
        even = [f for f in frames if frame_number(f.name) % 2 == 0]
        m, q = (odd, even) if name == "odd-even" else (even, odd)
        return [Fold(tuple(m), tuple(q), name)]
    if m := re.fullmatch(r"every-(\d+)", name):
        k = int(m.group(1))
        if k < 2:
            raise DataError("every-K needs K >= 2")
        q = [f for i, f in enumerate(frames) if i % k == 0]
        mp = [f for i, f in enumerate(frames) if i % k != 0]
        return [Fold(tuple(mp), tuple(q), name)]
    if name == "leave-one-out":
        return [Fold(tuple(frames[:i] + frames[i + 1:]), (f,), f"leave-out-{f.name}")
                for i, f in enumerate(frames)]
    if name == "all":
        return [Fold(tuple(frames), (), name)]
    raise DataError(f"unknown split {name!r}; available for {scene.name}: "
                    f"{', '.join(available_splits(scene))}")


def available_splits(scene: Scene) -> list[str]:
    """The official splits, then the generic ones (which need posed frames)."""
    official = sorted(scene.official_splits)
    if not scene.posed_frames:
        return official
    return official + [s for s in ("odd-even", "even-odd", "every-5", "leave-one-out", "all") if s not in official]
