"""Global image descriptors computed from an image's local descriptors, for image
retrieval (retrieval pose baselines, Torii et al. 2011; hierarchical localization).

Both encoders learn a vocabulary on the map's own images (`fit`) and give one
unit-L2 float32 vector per image (`encode`), so that the dot product of two vectors
is their cosine similarity (see `RetrievalIndex`):

- `BagOfWords`: tf-idf weighted histogram of visual words (Sivic & Zisserman 2003).
- `Vlad`: aggregated residuals to the words, intra- and power-normalised
  (Jegou et al. 2010; Arandjelovic & Zisserman 2013, "All about VLAD").

An image without local descriptors encodes to the ZERO vector (not an error): it
scores 0 against every image, so a textureless query retrieves nothing useful but
does not stop a batch. Encoders are saved to HDF5 (no pickle) with a format tag and
version; a missing, truncated or mismatched file is a `MapError`."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar, Protocol, Sequence

import h5py
import numpy as np

from ..configs import check_keys
from ..errors import MapError, VlocError
from .vocabulary import assign, flat_index, train_vocabulary

FORMAT_TAG = "vloc-global-descriptor"
FORMAT_VERSION = 1


class GlobalDescriptor(Protocol):
    """What retrieval needs from a global descriptor."""

    name: str
    config: object
    input: str                          # "local": encode(descriptors); "image": encode_image(image)

    @property
    def dim(self) -> int: ...

    def fit(self, descriptors: Sequence[np.ndarray]) -> GlobalDescriptor: ...

    def encode(self, descriptors: np.ndarray) -> np.ndarray: ...

    def encode_many(self, descriptors: Sequence[np.ndarray]) -> np.ndarray: ...

    def save(self, path) -> None: ...


# --------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class BagOfWordsConfig:
    k: int = 1024                # visual words
    seed: int = 0                # k-means initialisation and training subsample
    max_train: int = 200_000     # descriptors used to train the vocabulary
    niter: int = 20              # k-means iterations
    spherical: bool = True       # unit-norm centroids (SIFT descriptors are unit-norm)

    def __post_init__(self):
        _check_common(self)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class VladConfig:
    k: int = 64                  # visual words; the vector has k * D dimensions
    seed: int = 0
    max_train: int = 200_000
    niter: int = 20
    spherical: bool = False      # plain k-means: residuals to the true cluster means
    power: float = 0.5           # power-normalisation exponent (0.5: signed square root)

    def __post_init__(self):
        _check_common(self)
        try:
            object.__setattr__(self, "power", float(self.power))
        except (TypeError, ValueError):
            raise VlocError(f"vlad option power must be a number, got {self.power!r}") from None
        if not 0 < self.power <= 1:
            raise VlocError(f"vlad option power must be in (0, 1], got {self.power}")

    def to_dict(self) -> dict:
        return asdict(self)


def _check_common(cfg) -> None:
    set_ = object.__setattr__
    for f in ("k", "seed", "max_train", "niter"):
        v = getattr(cfg, f)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise VlocError(f"global descriptor option {f} must be an integer, got {v!r}")
        set_(cfg, f, int(v))
    if cfg.k < 1 or cfg.max_train < 1 or cfg.niter < 1 or cfg.seed < 0:
        raise VlocError(f"global descriptor options k, max_train, niter must be >= 1 and seed >= 0, "
                        f"got k={cfg.k} max_train={cfg.max_train} niter={cfg.niter} seed={cfg.seed}")
    set_(cfg, "spherical", bool(cfg.spherical))


# --------------------------------------------------------------------------- base
class _VocabularyEncoder:
    """Shared part of the encoders: a vocabulary of k words, nearest-word assignment
    (exact, FAISS IndexFlatL2 on the centroids), HDF5 save/load."""

    name: ClassVar[str]
    config_class: ClassVar[type]
    input: ClassVar[str] = "local"      # encode() takes an image's local descriptors

    def __init__(self, config=None):
        self.config = self.config_class() if config is None else config
        if not isinstance(self.config, self.config_class):
            raise VlocError(f"{self.name} needs a {self.config_class.__name__}, "
                            f"got {type(self.config).__name__}")
        self.vocabulary: np.ndarray | None = None     # (k, D) float32
        self._index = None

    # state ---------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self.vocabulary is not None

    @property
    def descriptor_dim(self) -> int:
        self._require_fit()
        return int(self.vocabulary.shape[1])

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def _require_fit(self) -> None:
        if self.vocabulary is None:
            raise VlocError(f"global descriptor {self.name!r} is not fitted: call fit() or load() first")

    def _set_vocabulary(self, vocabulary: np.ndarray) -> None:
        self.vocabulary = np.ascontiguousarray(vocabulary, dtype=np.float32)
        self._index = flat_index(self.vocabulary)

    # input checks --------------------------------------------------------
    def _as_descriptors(self, descriptors, dim: int | None = None) -> np.ndarray:
        x = np.asarray(descriptors, dtype=np.float32)
        if (x.ndim == 1 and x.size == 0) or (x.ndim == 2 and x.shape[0] == 0):   # an image without features
            return np.zeros((0, dim if dim is not None else (x.shape[1] if x.ndim == 2 else 0)), np.float32)
        if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
            want = f"(N, {dim})" if dim is not None else "(N, D)"
            raise VlocError(f"{self.name}: local descriptors must be {want}, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise VlocError(f"{self.name}: local descriptors contain NaN or infinite values")
        return x

    def _fit_inputs(self, descriptors: Sequence[np.ndarray]) -> list[np.ndarray]:
        if isinstance(descriptors, np.ndarray) or len(descriptors) == 0:
            raise VlocError(f"{self.name}.fit needs a non-empty list of per-image descriptor arrays")
        arrays = [self._as_descriptors(d) for d in descriptors]
        dims = {a.shape[1] for a in arrays if len(a)}
        if len(dims) != 1:
            raise VlocError(f"{self.name}.fit: images have descriptors of dimensions {sorted(dims)}"
                            if dims else f"{self.name}.fit: no image has local descriptors")
        d = dims.pop()
        return [a.reshape(0, d) if len(a) == 0 else a for a in arrays]

    def _train(self, arrays: list[np.ndarray]) -> None:
        c = self.config
        self._set_vocabulary(train_vocabulary(np.concatenate(arrays), c.k, seed=c.seed,
                                              max_train=c.max_train, niter=c.niter,
                                              spherical=c.spherical))

    def assign(self, descriptors: np.ndarray) -> np.ndarray:
        """(N,) nearest word of each local descriptor."""
        self._require_fit()
        return assign(self.vocabulary, self._as_descriptors(descriptors, self.descriptor_dim), self._index)

    # encoding ------------------------------------------------------------
    def encode(self, descriptors: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def encode_many(self, descriptors: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) float32: `encode` of each image's descriptors."""
        self._require_fit()
        out = np.zeros((len(descriptors), self.dim), np.float32)
        for i, d in enumerate(descriptors):
            out[i] = self.encode(d)
        return out

    # persistence ---------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        return {"vocabulary": self.vocabulary}

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self._set_vocabulary(arrays["vocabulary"])

    def _check_arrays(self, arrays: dict[str, np.ndarray]) -> str | None:
        """None if `arrays` fit the config, else what is wrong."""
        v = arrays.get("vocabulary")
        if v is None:
            return "no vocabulary"
        if v.ndim != 2 or v.shape[0] != self.config.k or v.shape[1] < 1:
            return f"vocabulary of shape {v.shape} for k={self.config.k}"
        if not np.all(np.isfinite(v)):
            return "vocabulary contains NaN or infinite values"
        return None

    def save(self, path) -> None:
        """Write the fitted encoder to an HDF5 file (plain datasets and attributes)."""
        self._require_fit()
        path = Path(path)
        write_encoder_file(path, self.name, self.config.to_dict(), self._arrays())

    @classmethod
    def load(cls, path):
        """Read an encoder written by `save`; MapError if it is missing, corrupt, of
        another format version or of another kind than `cls`."""
        enc = load_global(path)
        if not isinstance(enc, cls):
            raise MapError(f"{path} holds a {enc.name!r} global descriptor, not {cls.name!r}")
        return enc

    def __repr__(self) -> str:
        state = f"dim={self.dim}" if self.fitted else "not fitted"
        return f"{type(self).__name__}({self.config}, {state})"


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else np.zeros(v.shape, np.float32)


# --------------------------------------------------------------------------- BoW
class BagOfWords(_VocabularyEncoder):
    """tf-idf bag of visual words. Each local descriptor is hard-assigned to its
    nearest word; the vector is w_i = tf_i * idf_i with tf_i = n_i / n (share of the
    image's descriptors on word i) and idf_i = log(N / N_i) (N fit images, N_i of them
    containing word i; 0 for words in no fit image), then L2-normalised: k dimensions,
    stored dense although mostly zero.

    The dot product of two such vectors sums over the words both images contain, so it
    is exactly the score of an inverted-file tf-idf scorer with L2-normalised vectors
    (Video Google); a dense `IndexFlatIP` over these vectors computes the same ranking.
    A word in every fit image has idf 0 and does not count."""

    name = "bow"
    config_class = BagOfWordsConfig

    def __init__(self, config: BagOfWordsConfig | None = None):
        super().__init__(config)
        self.idf: np.ndarray | None = None            # (k,) float32

    @property
    def dim(self) -> int:
        return self.config.k

    def fit(self, descriptors: Sequence[np.ndarray]) -> BagOfWords:
        """Train the vocabulary on all images' descriptors and the idf on the images."""
        arrays = self._fit_inputs(descriptors)
        self._train(arrays)
        k = self.config.k
        df = np.zeros(k, np.int64)
        for a in arrays:
            df[np.unique(self.assign(a))] += 1
        n = len(arrays)
        self.idf = np.where(df > 0, np.log(n / np.maximum(df, 1)), 0.0).astype(np.float32)
        return self

    def term_frequencies(self, descriptors: np.ndarray) -> np.ndarray:
        """(k,) float64 share of the image's descriptors on each word (tf)."""
        words = self.assign(descriptors)
        counts = np.bincount(words, minlength=self.config.k).astype(np.float64)
        return counts / max(len(words), 1)

    def encode(self, descriptors: np.ndarray) -> np.ndarray:
        """(k,) unit-L2 tf-idf vector; zero for an image without descriptors (or whose
        words all have idf 0)."""
        self._require_fit()
        return _unit(self.term_frequencies(descriptors) * self.idf)

    def _arrays(self):
        return {"vocabulary": self.vocabulary, "idf": self.idf}

    def _set_arrays(self, arrays):
        super()._set_arrays(arrays)
        self.idf = np.asarray(arrays["idf"], np.float32)

    def _check_arrays(self, arrays):
        bad = super()._check_arrays(arrays)
        if bad:
            return bad
        idf = arrays.get("idf")
        if idf is None or idf.shape != (self.config.k,) or not np.all(np.isfinite(idf)) or (idf < 0).any():
            return "missing or malformed idf"
        return None


# --------------------------------------------------------------------------- VLAD
class Vlad(_VocabularyEncoder):
    """VLAD: for each word, the sum of the residuals (descriptor - centroid) of the
    descriptors assigned to it, a (k, D) array; then intra-normalisation (each word's
    block to unit L2, so a burst of similar descriptors counts as one), power
    normalisation (signed |x|^power, 0.5 = signed square root) and a global L2
    normalisation; output k * D dimensions, word-major."""

    name = "vlad"
    config_class = VladConfig

    @property
    def dim(self) -> int:
        self._require_fit()
        return self.config.k * self.descriptor_dim

    def fit(self, descriptors: Sequence[np.ndarray]) -> Vlad:
        self._train(self._fit_inputs(descriptors))
        return self

    def aggregate(self, descriptors: np.ndarray) -> np.ndarray:
        """(k, D) float64 sums of residuals per word, before any normalisation."""
        self._require_fit()
        x = self._as_descriptors(descriptors, self.descriptor_dim)
        words = self.assign(x)
        k, d = self.vocabulary.shape
        blocks = np.zeros((k, d), np.float64)
        if len(words):
            order = np.argsort(words, kind="stable")
            w = words[order]
            res = x[order].astype(np.float64) - self.vocabulary[w].astype(np.float64)
            starts = np.flatnonzero(np.r_[True, w[1:] != w[:-1]])
            blocks[w[starts]] = np.add.reduceat(res, starts, axis=0)
        return blocks

    def encode(self, descriptors: np.ndarray) -> np.ndarray:
        """(k * D,) unit-L2 VLAD vector; zero for an image without descriptors."""
        return normalize_vlad(self.aggregate(descriptors), self.config.power)


def intra_normalize(blocks: np.ndarray) -> np.ndarray:
    """Each row (word block) to unit L2 norm; all-zero rows stay zero."""
    b = np.asarray(blocks, np.float64)
    n = np.linalg.norm(b, axis=1, keepdims=True)
    return np.divide(b, n, out=np.zeros_like(b), where=n > 0)


def normalize_vlad(blocks: np.ndarray, power: float = 0.5) -> np.ndarray:
    """(k, D) residual sums -> flat VLAD vector: intra-normalisation, power
    normalisation (signed |x|^power), global L2."""
    v = intra_normalize(blocks).ravel()
    v = np.sign(v) * np.abs(v) ** power
    return _unit(v)


# --------------------------------------------------------------------------- registry
# from local descriptors (encode(descriptors)); the image-based ones (encode_image(image))
# are in image_global.py and densevlad.py and named in IMAGE_GLOBAL_DESCRIPTORS
GLOBAL_DESCRIPTORS: dict[str, type[_VocabularyEncoder]] = {"bow": BagOfWords, "vlad": Vlad}
def write_encoder_file(path: Path, name: str, config: dict, arrays: dict, attrs: dict | None = None) -> None:
    """Every encoder's file: HDF5 with the format tag, version, name, config (JSON),
    extra attributes and plain arrays (no pickle)."""
    try:
        with h5py.File(path, "w") as f:
            f.attrs["format"] = FORMAT_TAG
            f.attrs["version"] = FORMAT_VERSION
            f.attrs["name"] = name
            f.attrs["config"] = json.dumps(config, sort_keys=True)
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
            for key, arr in arrays.items():
                f.create_dataset(key, data=arr)
    except OSError as e:
        raise MapError(f"cannot write global descriptor {path}: {e}") from None


IMAGE_GLOBAL_DESCRIPTORS = ("aliked-gem", "aliked-netvlad", "densevlad")


def make_global(name: str, **overrides):
    """An (unfitted) global descriptor by registry name, with config overrides
    (e.g. make_global("vlad", k=32), make_global("aliked-netvlad", k=16, head=True))."""
    if name == "densevlad":
        from .densevlad import make_densevlad
        return make_densevlad(**overrides)
    if name in IMAGE_GLOBAL_DESCRIPTORS:
        from .image_global import make_dense_global
        return make_dense_global(name, **overrides)
    if name not in GLOBAL_DESCRIPTORS:
        raise VlocError(f"unknown global descriptor {name!r}; available: "
                        f"{', '.join([*GLOBAL_DESCRIPTORS, *IMAGE_GLOBAL_DESCRIPTORS])}")
    cls = GLOBAL_DESCRIPTORS[name]
    overrides = {k: v for k, v in overrides.items() if k != "name"}
    check_keys(cls.config_class, overrides, f"{name} options")
    return cls(cls.config_class(**overrides))


def load_global(path):
    """Read any global descriptor written by `save` (its kind is in the file)."""
    path = Path(path)
    if not path.is_file():
        raise MapError(f"global descriptor file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: f.attrs[k] for k in f.attrs}
            arrays = {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
    except (OSError, KeyError, ValueError) as e:
        raise MapError(f"cannot read global descriptor {path}: {e}") from None
    if _str(attrs.get("format")) != FORMAT_TAG:
        raise MapError(f"{path} is not a vloc global descriptor file")
    version = attrs.get("version")
    if not isinstance(version, (int, np.integer)) or int(version) != FORMAT_VERSION:
        raise MapError(f"global descriptor {path} has format version {version}, "
                       f"this vloc reads version {FORMAT_VERSION}")
    name = _str(attrs.get("name"))
    if name in IMAGE_GLOBAL_DESCRIPTORS:
        try:
            cfg = json.loads(_str(attrs.get("config")) or "")
        except ValueError as e:
            raise MapError(f"global descriptor {path} has a malformed config: {e}") from None
        if name == "densevlad":
            from .densevlad import DenseVlad
            return DenseVlad._from_file(path, cfg, arrays)
        from .image_global import DenseGlobal
        return DenseGlobal._from_file(path, name, cfg, attrs, arrays)
    if name not in GLOBAL_DESCRIPTORS:
        raise MapError(f"global descriptor {path} is of unknown kind {name!r}")
    cls = GLOBAL_DESCRIPTORS[name]
    try:
        cfg = json.loads(_str(attrs.get("config")) or "")
        if not isinstance(cfg, dict) or set(cfg) - {f.name for f in fields(cls.config_class)}:
            raise ValueError("unknown keys")
        enc = cls(cls.config_class(**cfg))
    except (ValueError, TypeError, VlocError) as e:
        raise MapError(f"global descriptor {path} has a malformed config: {e}") from None
    bad = enc._check_arrays(arrays)
    if bad:
        raise MapError(f"global descriptor {path} is corrupt: {bad}")
    enc._set_arrays(arrays)
    return enc


def _str(v) -> str | None:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v if isinstance(v, str) else None
