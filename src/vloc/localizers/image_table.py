"""A hierarchical map's table of its mapping images, one row per keypoint, images one
after the other (in name order):

- `image_descriptors.npy`: the descriptors, float16, left on disk: a query reads its
  k retrieved images' rows with one `pread` each (microseconds; from features.h5 an
  image costs ~0.5 ms). Not memory-mapped: the kernel maps pages around each read
  into the process (measured: resident memory grew 6.6 MB per query);
- `image_index.h5`: `names`, `offsets` (image i's rows are offsets[i]:offsets[i+1]) and
  `point_rows` (the keypoint's 3D point, a row of structure/points.h5, or -1).

Plain files: numpy's own format (read without pickle) and HDF5."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import MapError

DESCRIPTORS = "image_descriptors.npy"
INDEX = "image_index.h5"


class ImageTable:
    def __init__(self, names: list[str], offsets: np.ndarray, point_rows: np.ndarray, descriptors: _RowFile):
        self.names, self.offsets, self.rows, self.desc = names, offsets, point_rows, descriptors
        self.index = {n: i for i, n in enumerate(names)}
        self.descriptors = _View(self, lambda s: self.desc.read(s.start, s.stop).astype(np.float32))
        self.point_rows = _View(self, lambda s: self.rows[s])

    def span(self, name: str) -> slice:
        try:
            i = self.index[name]
        except KeyError:
            raise MapError(f"the map's image table has no image {name}") from None
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    @classmethod
    def load(cls, map_dir: Path) -> ImageTable:
        import h5py
        map_dir = Path(map_dir)
        try:
            with h5py.File(map_dir / INDEX, "r") as f:
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["names"][()]]
                offsets, rows = f["offsets"][()].astype(np.int64), f["point_rows"][()].astype(np.int64)
            desc = _RowFile(map_dir / DESCRIPTORS)
        except (OSError, KeyError, ValueError) as e:
            raise MapError(f"cannot read the image table of {map_dir}: {e}") from None
        if (len(offsets) != len(names) + 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 0)
                or offsets[-1] != len(rows) or len(desc.shape) != 2 or desc.shape[0] != len(rows)):
            raise MapError(f"corrupt image table in {map_dir}: {len(names)} images, {len(offsets)} offsets "
                           f"ending at {offsets[-1] if len(offsets) else None}, {len(rows)} point rows, "
                           f"descriptors {desc.shape}")
        return cls(names, offsets, rows, desc)


class _RowFile:
    """Rows of a 2-D array in a .npy file, read on demand with `os.pread`."""

    def __init__(self, path: Path):
        import os
        self.file = open(path, "rb")
        version = np.lib.format.read_magic(self.file)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        self.shape, fortran, self.dtype = read_header(self.file)
        if fortran or len(self.shape) != 2 or self.dtype.hasobject:
            raise ValueError(f"expected a C-ordered 2-D numeric array, got shape {self.shape}, {self.dtype}")
        self.start, self.row_bytes = self.file.tell(), self.shape[1] * self.dtype.itemsize
        size = os.fstat(self.file.fileno()).st_size
        if size != self.start + self.shape[0] * self.row_bytes:
            raise ValueError(f"{path.name} has {size} bytes, its header says {self.start + self.shape[0] * self.row_bytes}")

    def read(self, first: int, stop: int) -> np.ndarray:
        import os
        data = os.pread(self.file.fileno(), (stop - first) * self.row_bytes, self.start + first * self.row_bytes)
        return np.frombuffer(data, self.dtype).reshape(stop - first, self.shape[1])


class _View:
    """`view[name]`: one image's rows of a table column."""

    def __init__(self, table: ImageTable, read):
        self.table, self.read = table, read

    def __getitem__(self, name: str) -> np.ndarray:
        return self.read(self.table.span(name))


def write_image_table(map_dir: Path, names: list[str], sizes: list[int], descriptor_dim: int,
                      images: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
    """Write the table of images `names` with `sizes[i]` keypoints each, streaming:
    `images` yields each image's (descriptors, point rows) in turn (so a map of 100k
    images never holds all its descriptors in memory)."""
    import h5py
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    desc = np.lib.format.open_memmap(map_dir / DESCRIPTORS, mode="w+", dtype=np.float16,
                                     shape=(int(offsets[-1]), descriptor_dim))
    rows = np.full(int(offsets[-1]), -1, np.int32)
    for i, (d, r) in enumerate(images):
        if len(d) != sizes[i] or len(r) != sizes[i]:
            raise MapError(f"image {names[i]}: {len(d)} descriptors and {len(r)} point rows, "
                           f"expected {sizes[i]}")
        desc[offsets[i]:offsets[i + 1]] = d
        rows[offsets[i]:offsets[i + 1]] = r
    desc.flush()
    del desc
    with h5py.File(map_dir / INDEX, "w") as f:
        f.create_dataset("names", data=np.array(names, dtype=h5py.string_dtype()))
        f.create_dataset("offsets", data=offsets)
        f.create_dataset("point_rows", data=rows)
