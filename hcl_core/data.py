"""Data sets and the two-view augmentation.

Every data set comes back as one :class:`Dataset` of in-memory tensors:

* images: ``float32`` of shape ``(N, C, H, W)`` with values in ``[0, 1]``;
* vectors (``synthetic``): ``float32`` of shape ``(N, D)``;
* labels: ``int64`` of shape ``(N,)``, values in ``0 .. num_classes - 1``.

``digits`` (bundled with scikit-learn) and ``synthetic`` need nothing on disk. The others read
the files their usual archives unpack to, from a folder the user names (``root``); this module
never downloads anything, because the app runs without a network.

:func:`augment` and :func:`two_views` draw per-sample random parameters and apply them to the
whole batch with a few dozen tensor operations (no loop over samples), on whatever device the
batch lives on: about 50 times the throughput of per-sample torchvision transforms (timings are
in the comment that opens the augmentation section).
"""

from __future__ import annotations

import functools
import gzip
import math
import numbers
import os
import pickle
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DATASETS",
    "DataFormatError",
    "DataNotFoundError",
    "Dataset",
    "DatasetInfo",
    "augment",
    "clear_cache",
    "load_dataset",
    "two_views",
]

#: Why no file is ever fetched; appended to every "files not found" message.
_NO_DOWNLOAD = "this app never downloads data sets, since that needs a network, which it does not use"


class DataNotFoundError(FileNotFoundError):
    """The files of a data set are not where they should be (the message says what to put where)."""


class DataFormatError(ValueError):
    """A data file exists but is not in the expected format (corrupt, truncated or unsafe)."""


# --------------------------------------------------------------------------------------------
# The data set container and the registry
# --------------------------------------------------------------------------------------------


# eq=False: comparing tensors field by field is ambiguous; two Datasets are equal only if identical.
@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split held in memory.

    ``train_x``/``test_x``: ``float32``, ``(N, C, H, W)`` in ``[0, 1]`` for images, ``(N, D)``
    for vectors. ``train_y``/``test_y``: ``int64``, ``(N,)``. Loaded data sets are cached and
    shared: treat the tensors as read-only (index or clone them before changing anything).
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    is_image: bool

    def __post_init__(self) -> None:
        # Catch a loader bug here rather than as a shape error deep inside training.
        want_dims = 4 if self.is_image else 2
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.dtype != torch.float32 or y.dtype != torch.int64:
                raise ValueError(f"{self.name} {split}: inputs must be float32 and labels int64, "
                                 f"got {x.dtype} and {y.dtype}")
            if x.dim() != want_dims or y.dim() != 1 or len(x) != len(y):
                raise ValueError(f"{self.name} {split}: inputs of shape {tuple(x.shape)} do not fit labels of "
                                 f"shape {tuple(y.shape)} (images need 4 dims, vectors 2)")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise ValueError(f"{self.name} {split}: labels must lie in 0..{len(self.classes) - 1}")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(f"{self.name}: train samples {tuple(self.train_x.shape[1:])} and test samples "
                             f"{tuple(self.test_x.shape[1:])} differ in shape")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample: ``(C, H, W)`` for images, ``(D,)`` for vectors."""
        return tuple(self.train_x.shape[1:])


@dataclass(frozen=True)
class DatasetInfo:
    """Registry entry: what a data set is and whether it needs a ``root`` folder."""

    name: str
    description: str
    needs_root: bool
    is_image: bool


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("digits", "8x8 handwritten digits bundled with scikit-learn (1797 images, 10 classes); "
                    "no files needed.", needs_root=False, is_image=True),
        DatasetInfo("synthetic", "Gaussian mixture of 10 classes on the unit sphere in 32 dimensions, with an "
                    "adjustable class overlap; no files needed.", needs_root=False, is_image=False),
        DatasetInfo("mnist", "MNIST handwritten digits, 28x28 grayscale, read from the four IDX files in "
                    "root/MNIST/raw/.", needs_root=True, is_image=True),
        DatasetInfo("fashion_mnist", "Fashion-MNIST clothing, 28x28 grayscale, read from the four IDX files in "
                    "root/FashionMNIST/raw/.", needs_root=True, is_image=True),
        DatasetInfo("cifar10", "CIFAR-10, 32x32 colour, 10 classes, read from root/cifar-10-batches-py/.",
                    needs_root=True, is_image=True),
        DatasetInfo("cifar100", "CIFAR-100, 32x32 colour, 100 fine classes, read from root/cifar-100-python/.",
                    needs_root=True, is_image=True),
        DatasetInfo("image_folder", "Your own images: root/<class>/*.png|jpg (or root/train/<class> and "
                    "root/test/<class>), resized to a square.", needs_root=True, is_image=True),
    )
}

_DIGIT_NAMES = tuple(str(i) for i in range(10))
_FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


# --------------------------------------------------------------------------------------------
# load_dataset: validation, caching, dispatch
# --------------------------------------------------------------------------------------------

_CACHE_SIZE = 8  # CIFAR as float32 is ~0.7 GB, so keep only a few data sets alive
_LOAD_LOCK = threading.Lock()  # the app loads from several threads; load each data set once


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    max_train: int | None = None,
    max_test: int | None = None,
    synthetic_overlap: float = 0.3,
    image_size: int = 32,
) -> Dataset:
    """Load data set ``name`` (a key of :data:`DATASETS`) as a :class:`Dataset`.

    ``root`` is the folder holding the files of the data sets that need one (ignored by
    ``digits`` and ``synthetic``). ``max_train`` / ``max_test`` keep at most that many samples,
    chosen deterministically and stratified by class. ``synthetic_overlap`` (0..1) is the class
    overlap of ``synthetic``; ``image_size`` the side length ``image_folder`` resizes to.

    Results are cached in-process on these arguments (and on the modification times of the
    files read, so replaced files are re-read): repeated calls return the same tensors, which
    must be treated as read-only.

    Raises ``ValueError`` for an unknown name, a missing ``root`` or a bad parameter,
    :class:`DataNotFoundError` when the files are not there and :class:`DataFormatError` when
    they are corrupt.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}")
    info = DATASETS[name]
    max_train = _check_limit("max_train", max_train)
    max_test = _check_limit("max_test", max_test)
    overlap, size = _check_overlap(synthetic_overlap), _check_image_size(image_size)
    root_key: str | None = None
    if info.needs_root:
        if root is None:
            raise ValueError(f"data set {name!r} is read from local files: pass root, the folder holding them "
                             f"(only digits and synthetic need no files)")
        root_key = os.path.abspath(os.fspath(root))
    # Locating the files first raises DataNotFoundError early and gives the cache a fingerprint.
    fingerprint = _fingerprint(name, Path(root_key)) if root_key is not None else ()
    # Every argument is validated, but only those a data set reads go into its cache key.
    key_overlap = overlap if name == "synthetic" else None
    key_size = size if name == "image_folder" else None
    with _LOAD_LOCK:
        return _load_cached(name, root_key, max_train, max_test, key_overlap, key_size, fingerprint)


def clear_cache() -> None:
    """Forget every cached data set (tests; or to free memory)."""
    _load_cached.cache_clear()


def _check_limit(field: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{field} must be a positive whole number of samples or None (= all), got {value!r}")
    return int(value)


def _check_overlap(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"synthetic_overlap must be a number from 0 (separated) to 1 (overlapping), got {value!r}")
    return float(value)


def _check_image_size(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 4 <= value <= 1024:
        raise ValueError(f"image_size must be a whole number of pixels from 4 to 1024, got {value!r}")
    return int(value)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _load_cached(
    name: str,
    root: str | None,
    max_train: int | None,
    max_test: int | None,
    overlap: float | None,
    image_size: int | None,
    fingerprint: tuple,
) -> Dataset:
    del fingerprint  # only part of the cache key
    if name == "digits":
        parts = _load_digits()
    elif name == "synthetic":
        parts = _load_synthetic(float(overlap or 0.0))
    elif name in ("mnist", "fashion_mnist"):
        parts = _load_mnist_like(name, Path(root or "."))
    elif name == "cifar10":
        parts = _load_cifar10(Path(root or "."))
    elif name == "cifar100":
        parts = _load_cifar100(Path(root or "."))
    else:
        parts = _load_image_folder(Path(root or "."), image_size or 32)
    train_x, train_y, test_x, test_y, classes = parts
    if max_train is not None and max_train < len(train_y):
        keep = _stratified_subset(train_y.numpy(), max_train)
        train_x, train_y = train_x[keep].contiguous(), train_y[keep].contiguous()
    if max_test is not None and max_test < len(test_y):
        keep = _stratified_subset(test_y.numpy(), max_test)
        test_x, test_y = test_x[keep].contiguous(), test_y[keep].contiguous()
    return Dataset(name, train_x, train_y, test_x, test_y, tuple(classes), DATASETS[name].is_image)


_Parts = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[str, ...]]


def _fingerprint(name: str, root: Path) -> tuple:
    """``(path, mtime_ns, size)`` of what the loader will read; raises DataNotFoundError if absent."""
    if name in ("mnist", "fashion_mnist"):
        paths = list(_find_mnist_files(name, root).values())
    elif name == "cifar10":
        paths = _find_cifar_files(root, "cifar-10-batches-py", _CIFAR10_FILES, "cifar-10-python.tar.gz")
    elif name == "cifar100":
        paths = _find_cifar_files(root, "cifar-100-python", _CIFAR100_FILES, "cifar-100-python.tar.gz")
    else:
        # A directory's mtime changes when entries are added, removed or renamed in it.
        paths = _image_folder_dirs(root)
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)


# --------------------------------------------------------------------------------------------
# Splits and subsets (numpy's legacy RandomState: its stream is frozen, so splits never change)
# --------------------------------------------------------------------------------------------


def _stratified_subset(y: np.ndarray, n: int, seed: int = 0) -> torch.Tensor:
    """Indices (sorted) of ``n`` samples whose class proportions match ``y``'s.

    Each sample gets the key ``(rank within its class + 0.5) / class size`` in a fixed random
    order; the ``n`` smallest keys take every class in proportion, without a loop over classes.
    """
    perm = np.random.RandomState(seed).permutation(len(y))
    yp = y[perm]
    counts = np.bincount(yp)
    order = np.argsort(yp, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(len(y), dtype=np.int64)
    rank[order] = np.arange(len(y)) - np.repeat(starts, counts)
    key = (rank + 0.5) / counts[yp]
    chosen = perm[np.argsort(key, kind="stable")[:n]]
    return torch.from_numpy(np.sort(chosen))


def _stratified_split(y: np.ndarray, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fixed stratified split ``(train_idx, test_idx)``; a class of >= 2 samples gives at least one to test."""
    rng = np.random.RandomState(seed)
    test: list[np.ndarray] = []
    for c in np.unique(y):  # a loop over classes, not samples
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        k = min(max(round(test_fraction * len(idx)), 1), len(idx) - 1) if len(idx) >= 2 else 0
        test.append(idx[:k])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, dtype=np.int64)
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask), test_idx


# --------------------------------------------------------------------------------------------
# digits and synthetic (no files)
# --------------------------------------------------------------------------------------------


def _load_digits() -> _Parts:
    """scikit-learn's 8x8 digits, values 0..16 scaled to [0, 1], shape (N, 1, 8, 8).

    The 80/20 split is stratified with ``random_state=0`` and independent of any run seed, so
    every run of every session evaluates on the same 360 test images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=0.2, stratify=bunch.target, random_state=0
    )
    train_idx, test_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx], _DIGIT_NAMES


SYNTHETIC_CLASSES = 10
SYNTHETIC_DIM = 32
SYNTHETIC_TRAIN = 2000
SYNTHETIC_TEST = 500


def synthetic_sigma(overlap: float) -> float:
    """Per-coordinate noise ``sigma = 0.05 + 0.95 * overlap`` of the synthetic mixture.

    Accuracy of the nearest true class mean on the 2500 samples (chance = 0.10), measured:
    overlap 0 (sigma 0.05) 1.00; 0.3 (0.34, the default) 0.89; 0.5 (0.53) 0.65; 0.75 (0.76)
    0.45; 1 (1.0) 0.33. Random unit means in 32 dimensions are nearly orthogonal, so the
    overlap comes from the noise alone; the mapping is linear in sigma because accuracy falls
    smoothly with it over this range.
    """
    return 0.05 + 0.95 * overlap


def _load_synthetic(overlap: float) -> _Parts:
    """Unit vectors ``normalize(mean_k + sigma * noise)``, shape (N, 32), 10 balanced classes.

    Means, labels and noise come from fixed seeds and the noise is the same for every overlap,
    so moving the slider only changes sigma: the same points drift apart or together.
    """
    g = torch.Generator().manual_seed(20240601)
    means = F.normalize(torch.randn(SYNTHETIC_CLASSES, SYNTHETIC_DIM, generator=g), dim=1)
    sigma = synthetic_sigma(overlap)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = (torch.arange(n) % SYNTHETIC_CLASSES)[torch.randperm(n, generator=g)]
        noise = torch.randn(n, SYNTHETIC_DIM, generator=g)
        return F.normalize(means[y] + sigma * noise, dim=1), y

    train_x, train_y = sample(SYNTHETIC_TRAIN)
    test_x, test_y = sample(SYNTHETIC_TEST)
    return train_x, train_y, test_x, test_y, tuple(f"class {k}" for k in range(SYNTHETIC_CLASSES))


# --------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST: IDX files
# --------------------------------------------------------------------------------------------

_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_MNIST_FOLDER = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def _find_mnist_files(name: str, root: Path) -> dict[str, Path]:
    """The four IDX files, plain or .gz, in ``root/<Folder>/raw``, ``root/raw`` or ``root`` itself."""
    folder = _MNIST_FOLDER[name]
    dirs = (root / folder / "raw", root / "raw", root)
    found: dict[str, Path] = {}
    for base in _MNIST_FILES:
        # Some mirrors spell the files with a dot: train-images.idx3-ubyte.
        stems = (base, base.replace("-idx", ".idx"))
        candidates = (d / f"{stem}{ext}" for d in dirs for stem in stems for ext in ("", ".gz"))
        path = next((p for p in candidates if p.is_file()), None)
        if path is not None:
            found[base] = path
    missing = [b for b in _MNIST_FILES if b not in found]
    if missing:
        where = root / folder / "raw"
        absent = "" if root.is_dir() else f"; {root} does not exist"
        raise DataNotFoundError(
            f"{folder} files not found (missing: {', '.join(missing)}{absent}): put "
            f"{', '.join(_MNIST_FILES[:3])} and {_MNIST_FILES[3]} (plain or .gz) in {where}{os.sep} "
            f"(torchvision's layout) or directly in {root}{os.sep}; {_NO_DOWNLOAD}."
        )
    return found


def _read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the file is gzip (by its magic bytes, whatever its name)."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head != b"\x1f\x8b":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:
        raise DataFormatError(f"{path} is a damaged gzip file ({e}): replace it with a fresh copy") from e


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX array of unsigned bytes with ``ndim`` dimensions, validated against its header.

    Header: two zero bytes, the type code 0x08 (unsigned byte), the number of dimensions, then
    each dimension as a big-endian uint32; the data must fill the rest of the file exactly.
    """
    raw = _read_bytes(path)
    fix = "replace it with a fresh copy of the original file"
    if len(raw) < 4 + 4 * ndim:
        raise DataFormatError(f"{path} is too short ({len(raw)} bytes) to be an IDX file: {fix}")
    magic = raw[:4]
    if magic != bytes((0, 0, 0x08, ndim)):
        raise DataFormatError(
            f"{path} is not an IDX file of unsigned bytes with {ndim} dimension(s): its magic number is "
            f"0x{magic.hex()}, expected 0x{bytes((0, 0, 0x08, ndim)).hex()}; {fix}"
        )
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    header = 4 + 4 * ndim
    expected = math.prod(dims)
    if len(raw) - header != expected:
        raise DataFormatError(
            f"{path} declares shape {dims} ({expected} bytes of data) but holds {len(raw) - header} bytes "
            f"(truncated or padded): {fix}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_mnist_like(name: str, root: Path) -> _Parts:
    """(N, 1, H, W) images in [0, 1] (28x28 for the real files) and int64 labels 0..9."""
    files = _find_mnist_files(name, root)
    out: list[torch.Tensor] = []
    for images_file, labels_file in ((_MNIST_FILES[0], _MNIST_FILES[1]), (_MNIST_FILES[2], _MNIST_FILES[3])):
        images = _read_idx(files[images_file], 3)
        labels = _read_idx(files[labels_file], 1)
        if len(images) != len(labels):
            raise DataFormatError(f"{files[images_file]} holds {len(images)} images but {files[labels_file]} "
                                  f"holds {len(labels)} labels: the two files do not belong together")
        if len(labels) and labels.max() > 9:
            raise DataFormatError(f"{files[labels_file]} has label {labels.max()}, but labels must be 0..9")
        out.append(torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1))
        out.append(torch.from_numpy(labels.astype(np.int64)))
    if out[0].shape[1:] != out[2].shape[1:]:
        raise DataFormatError(f"train images are {tuple(out[0].shape[2:])} but test images "
                              f"{tuple(out[2].shape[2:])}: the files come from different data sets")
    classes = _DIGIT_NAMES if name == "mnist" else _FASHION_NAMES
    return out[0], out[1], out[2], out[3], classes


# --------------------------------------------------------------------------------------------
# CIFAR: python pickles, read with an allow-list unpickler
# --------------------------------------------------------------------------------------------

_CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
_CIFAR100_FILES = ("train", "test", "meta")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of bytes use it, and nothing more (no other codec)."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing to load _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    """``bytes()`` as protocol-2 pickles write an empty bytes object; ``bytes(n)`` would allocate n bytes."""
    if args:
        raise pickle.UnpicklingError("refusing to call bytes() with arguments")
    return b""


def _text(value: Any) -> str:
    return value.decode("latin1") if isinstance(value, bytes | bytearray) else str(value)


def _plain_dtype(code: Any, byte_order: Any = "|") -> np.dtype:
    """A numeric dtype (bool, int, uint, float) from a pickle's type code; anything else refused.

    Object dtypes are the danger: an object array built over bytes from the file holds
    attacker-chosen pointers, which numpy dereferences on first use or when it frees the array.
    """
    try:
        dtype = np.dtype(_text(code))
    except TypeError as e:
        raise pickle.UnpicklingError(f"refusing to load the array type {code!r}: {e}") from None
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise pickle.UnpicklingError(f"refusing to load an array of type {dtype}: only numeric arrays are allowed")
    order = _text(byte_order)
    return dtype.newbyteorder(order) if order in ("<", ">") and dtype.itemsize > 1 else dtype


def _array_from_bytes(raw: Any, dtype: np.dtype, shape: Any, fortran: bool = False) -> np.ndarray:
    """A fresh, writable array copied from ``raw``; its size must match ``shape`` exactly."""
    if isinstance(raw, pickle.PickleBuffer):
        raw = raw.raw()
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise pickle.UnpicklingError(f"refusing to load array data of type {type(raw).__name__}: only raw bytes")
    try:
        shape = tuple(int(n) for n in (shape if isinstance(shape, tuple | list) else (shape,)))
    except (TypeError, ValueError):
        raise pickle.UnpicklingError(f"an array has the invalid shape {shape!r}") from None
    count = math.prod(shape)
    if min(shape, default=0) < 0 or count * dtype.itemsize != len(memoryview(raw).cast("B")):
        raise pickle.UnpicklingError(f"an array of shape {shape} and type {dtype} does not match its "
                                     f"{len(memoryview(raw).cast('B'))} bytes of data")
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C").copy()


class _DtypeSpec:
    """What ``numpy.dtype(code, align, copy)`` plus its ``__setstate__`` in a pickle describe."""

    def __init__(self, code: Any, *_flags: Any):
        self.code, self.byte_order = code, "|"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1:
            self.byte_order = state[1]

    def build(self) -> np.dtype:
        return _plain_dtype(self.code, self.byte_order)


def _dtype_of(spec: Any) -> np.dtype:
    if not isinstance(spec, _DtypeSpec):
        raise pickle.UnpicklingError(f"an array names {type(spec).__name__} as its type, not a dtype")
    return spec.build()


def _refuse_direct_ndarray(*_args: Any) -> None:
    raise pickle.UnpicklingError("refusing to call numpy.ndarray directly: arrays may only be restored from data")


class _ArraySpec:
    """``numpy.core.multiarray._reconstruct(ndarray, ...)`` and the state that fills it."""

    def __init__(self, subtype: Any, *_args: Any):
        if subtype is not _refuse_direct_ndarray:
            raise pickle.UnpicklingError("refusing to restore an array of a type other than numpy.ndarray")
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def build(self) -> np.ndarray:
        state = self.state
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]  # (version, shape, dtype, is_fortran, data)
        if not (isinstance(state, tuple) and len(state) == 4):
            raise pickle.UnpicklingError("an array's state is not (shape, dtype, is_fortran, data)")
        shape, dtype, fortran, raw = state
        return _array_from_bytes(raw, _dtype_of(dtype), shape, bool(fortran))


class _BufferArraySpec:
    """``numpy.core.numeric._frombuffer(buffer, dtype, shape, order)`` (protocol 5 pickles)."""

    def __init__(self, raw: Any, dtype: Any, shape: Any, order: Any = "C"):
        self.raw, self.dtype, self.shape, self.order = raw, dtype, shape, order

    def build(self) -> np.ndarray:
        return _array_from_bytes(self.raw, _dtype_of(self.dtype), self.shape, _text(self.order) == "F")


class _ScalarSpec:
    """``numpy.core.multiarray.scalar(dtype, bytes)``: one numpy number."""

    def __init__(self, dtype: Any, raw: Any = b""):
        self.dtype, self.raw = dtype, raw

    def build(self) -> Any:
        return _array_from_bytes(self.raw, _dtype_of(self.dtype), ())[()]


_SPECS = (_ArraySpec, _BufferArraySpec, _ScalarSpec, _DtypeSpec)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain data and numeric numpy arrays only.

    A pickle can call any importable function while it loads (``os.system`` included), so a
    downloaded file is never given to ``pickle.load``. Nor does this unpickler hand numpy's own
    reconstructors to the file: they would build whatever array it describes, an object array
    over raw bytes included (attacker-chosen pointers, a crash or worse on first use). Instead
    the allowed globals record inert descriptions, and :func:`_build_arrays` turns those into
    fresh numeric arrays copied from the file's bytes. ``_codecs.encode`` (how Python 3 writes
    bytes at protocol 2) and an argument-less ``bytes()`` are the only other globals; dicts,
    lists, strings and numbers need none.
    """

    _GLOBALS: dict[tuple[str, str], Any] = {
        **{(m, n): f for m in ("numpy.core.multiarray", "numpy._core.multiarray")
           for n, f in (("_reconstruct", _ArraySpec), ("scalar", _ScalarSpec))},
        ("numpy.core.numeric", "_frombuffer"): _BufferArraySpec,
        ("numpy._core.numeric", "_frombuffer"): _BufferArraySpec,
        ("numpy", "ndarray"): _refuse_direct_ndarray,
        ("numpy", "dtype"): _DtypeSpec,
        ("_codecs", "encode"): _latin1_encode,
        ("__builtin__", "bytes"): _empty_bytes,
        ("builtins", "bytes"): _empty_bytes,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._GLOBALS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a data file may only contain arrays and plain data"
            ) from None


def _build_arrays(obj: Any) -> Any:
    """``obj`` with every recorded array description replaced by the real (numeric) array."""
    if isinstance(obj, _SPECS):
        return obj.build()
    if isinstance(obj, dict):
        return {k: _build_arrays(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_build_arrays(v) for v in obj)
    return obj


def _load_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle as a dict with ``str`` keys (the files were written by Python 2: bytes keys)."""
    try:
        with open(path, "rb") as f:
            obj = _build_arrays(_RestrictedUnpickler(f, encoding="bytes").load())
    except pickle.UnpicklingError as e:
        raise DataFormatError(f"{path} was not loaded: {e}; use the original file from the data set's archive") from e
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError,
            RecursionError, struct.error) as e:
        raise DataFormatError(f"{path} is not a valid pickle ({type(e).__name__}: {e}): replace it with a "
                              f"fresh copy") from e
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path} holds a {type(obj).__name__}, but a CIFAR file holds a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _find_cifar_files(root: Path, folder: str, names: tuple[str, ...], archive: str) -> list[Path]:
    """The CIFAR files in ``root/<folder>`` (the archive's own folder) or directly in ``root``."""
    for d in (root / folder, root):
        if all((d / n).is_file() for n in names):
            return [d / n for n in names]
    d = root / folder if (root / folder).is_dir() else root
    missing = [n for n in names if not (d / n).is_file()]
    absent = "" if root.is_dir() else f"; {root} does not exist"
    raise DataNotFoundError(
        f"CIFAR files not found (missing: {', '.join(missing)} in {d}{absent}): put "
        f"{', '.join(names[:-1])} and {names[-1]} in {root / folder}{os.sep}, the folder {archive} unpacks "
        f"to, or directly in {root}{os.sep}; {_NO_DOWNLOAD}."
    )


def _names(meta: dict[str, Any], key: str, path: Path) -> tuple[str, ...]:
    names = meta.get(key)
    if not isinstance(names, (list, tuple)) or not names:
        raise DataFormatError(f"{path} has no list {key!r} of class names: use the original meta file")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def _cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch: ``data`` uint8 (n, 3072), rows = R, G, B planes of 32x32 -> (n, 3, 32, 32) in [0, 1]."""
    batch = _load_pickle(path)
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataFormatError(f"{path}: 'data' must be a uint8 array of shape (n, 3072), got {got}")
    if labels is None:
        raise DataFormatError(f"{path} has no {label_key!r} entry")
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) != len(data):
        raise DataFormatError(f"{path} holds {len(data)} images but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataFormatError(f"{path} has labels outside 0..{num_classes - 1}")
    x = torch.from_numpy(np.ascontiguousarray(data)).view(-1, 3, 32, 32).float().div_(255.0)
    return x, torch.from_numpy(y)


def _load_cifar10(root: Path) -> _Parts:
    paths = _find_cifar_files(root, "cifar-10-batches-py", _CIFAR10_FILES, "cifar-10-python.tar.gz")
    classes = _names(_load_pickle(paths[-1]), "label_names", paths[-1])
    train = [_cifar_batch(p, "labels", len(classes)) for p in paths[:5]]
    test_x, test_y = _cifar_batch(paths[5], "labels", len(classes))
    return torch.cat([b[0] for b in train]), torch.cat([b[1] for b in train]), test_x, test_y, classes


def _load_cifar100(root: Path) -> _Parts:
    paths = _find_cifar_files(root, "cifar-100-python", _CIFAR100_FILES, "cifar-100-python.tar.gz")
    classes = _names(_load_pickle(paths[2]), "fine_label_names", paths[2])
    train_x, train_y = _cifar_batch(paths[0], "fine_labels", len(classes))
    test_x, test_y = _cifar_batch(paths[1], "fine_labels", len(classes))
    return train_x, train_y, test_x, test_y, classes


# --------------------------------------------------------------------------------------------
# image_folder: root/<class>/*.png (or root/train/<class>, root/test/<class>)
# --------------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


def _image_folder_help(root: Path) -> str:
    return (f"put one subfolder per class holding its images in {root}{os.sep} (e.g. {root / 'cat' / '001.png'}), "
            f"or train{os.sep} and test{os.sep} folders that each hold such class subfolders")


def _is_split_layout(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "test").is_dir()


def _image_folder_dirs(root: Path) -> list[Path]:
    """Folders whose contents define the data set (for the cache fingerprint)."""
    if not root.is_dir():
        raise DataNotFoundError(f"The image folder {root} does not exist: {_image_folder_help(root)}; "
                                f"{_NO_DOWNLOAD}.")
    tops = [root / "train", root / "test"] if _is_split_layout(root) else [root]
    dirs = [root, *tops] if tops[0] != root else [root]
    for top in tops:
        for dirpath, dirnames, _ in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            dirs.extend(Path(dirpath) / d for d in dirnames)
    return dirs


def _scan_classes(top: Path) -> dict[str, list[Path]]:
    """``{class name: sorted image paths}`` for the class subfolders of ``top`` (searched recursively)."""
    out: dict[str, list[Path]] = {}
    for cls in sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            Path(dirpath) / f
            for dirpath, dirnames, filenames in os.walk(cls)
            for f in filenames
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
            and not any(part.startswith(".") for part in Path(dirpath).relative_to(cls).parts)
        )
        if files:
            out[cls.name] = files
    return out


def _read_images(paths: list[Path], size: int, mode: str) -> torch.Tensor:
    """(N, C, size, size) float32 in [0, 1]; C = 1 for mode 'L', 3 for 'RGB'."""
    from PIL import Image

    arrays = []
    for p in paths:  # decoding is per file by nature; this runs once per data set, then is cached
        try:
            with Image.open(p) as img:
                img = img.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
                arrays.append(np.asarray(img, dtype=np.uint8))
        except (OSError, ValueError, SyntaxError) as e:
            raise DataFormatError(f"{p} could not be read as an image ({e}): remove or replace it") from e
    stack = np.stack(arrays) if arrays else np.zeros((0, size, size), np.uint8)
    x = torch.from_numpy(stack).float().div_(255.0)
    return x.unsqueeze(1) if mode == "L" else x.permute(0, 3, 1, 2).contiguous()


def _image_mode(paths: list[Path]) -> str:
    """'L' when every image is grayscale, otherwise 'RGB' (opening reads only the header)."""
    from PIL import Image

    for p in paths:
        try:
            with Image.open(p) as img:
                if img.mode not in _GRAY_MODES:
                    return "RGB"
        except (OSError, ValueError, SyntaxError) as e:
            raise DataFormatError(f"{p} could not be read as an image ({e}): remove or replace it") from e
    return "L"


def _load_image_folder(root: Path, size: int) -> _Parts:
    _image_folder_dirs(root)  # raises if the folder is missing
    if _is_split_layout(root):
        train_map, test_map = _scan_classes(root / "train"), _scan_classes(root / "test")
        classes = tuple(sorted(set(train_map) | set(test_map)))
    else:
        train_map, test_map = _scan_classes(root), {}
        classes = tuple(train_map)
    if not classes:
        raise DataNotFoundError(f"No class folders with images ({', '.join(IMAGE_EXTENSIONS)}) found in {root}: "
                                f"{_image_folder_help(root)}; {_NO_DOWNLOAD}.")
    if len(classes) < 2:
        raise DataNotFoundError(f"Only one class folder ({classes[0]}) with images found in {root}: "
                                f"{_image_folder_help(root)}, with at least two classes so that class "
                                f"accuracy means something.")
    index = {c: i for i, c in enumerate(classes)}

    def flat(mapping: dict[str, list[Path]]) -> tuple[list[Path], np.ndarray]:
        paths = [p for c in mapping for p in mapping[c]]
        labels = np.array([index[c] for c in mapping for _ in mapping[c]], dtype=np.int64)
        return paths, labels

    train_paths, train_labels = flat(train_map)
    test_paths, test_labels = flat(test_map)
    mode = _image_mode(train_paths + test_paths)
    if not test_map:
        tr, te = _stratified_split(train_labels)
        test_paths, test_labels = [train_paths[i] for i in te], train_labels[te]
        train_paths, train_labels = [train_paths[i] for i in tr], train_labels[tr]
    if not train_paths or not test_paths:
        which = "training" if not train_paths else "test"
        raise DataNotFoundError(f"No {which} images found in {root}: {_image_folder_help(root)}, with at least "
                                f"two images per class so that 20 % can be held out for testing.")
    return (_read_images(train_paths, size, mode), torch.from_numpy(train_labels),
            _read_images(test_paths, size, mode), torch.from_numpy(test_labels), classes)


# --------------------------------------------------------------------------------------------
# Augmentation: batched, per-sample random parameters, any device
# --------------------------------------------------------------------------------------------
#
# Each batch costs two random draws (an (N, K) table of per-sample parameters and one
# per-pixel normal field) and about thirty-five tensor operations, whatever N is. On a small CPU
# batch each operation costs 5..30 us, so their count, not the pixels, sets the time; the normal
# draw (~70 us for 16k pixels) and grid_sample (~55 us) are the largest single steps.
# Measured on the 2-core dev machine, 2 torch threads, median of 1000 calls (runs vary ~20 %):
#   digits (256, 1, 8, 8): augment 0.8-1.0 ms; two_views 1.2-1.5 ms (about 350k samples/s,
#   against ~6.8k samples/s for per-sample torchvision transforms, docs/MEASURED.md);
#   (256, 1, 28, 28) two_views 6-9 ms; CIFAR (256, 3, 32, 32) augment 8-12 ms;
#   synthetic (256, 32) two_views 0.65 ms.

#: Strengths above this are clamped to it (the config allows 0..2; 1 is the usual strong setting).
MAX_STRENGTH = 2.0

# Colour jitter as one 3x3 matrix per sample. In YIQ space (Y = luminance) a hue shift h rotates
# (I, Q) and saturation k scales it, so the RGB matrix is P0 + k cos(h) P1 + k sin(h) P2 with the
# constant matrices below. Saturation 0 gives the grayscale image, so random grayscale is k = 0.
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = np.linalg.inv(_YIQ)
_P0 = _YIQ_INV[:, :1] @ _YIQ[:1]
_P1 = _YIQ_INV[:, 1:] @ _YIQ[1:]
_P2 = _YIQ_INV[:, 1:] @ np.array([[0.0, -1.0], [1.0, 0.0]]) @ _YIQ[1:]
# As plain tuples: hashable keys for _const, which builds each device's tensor once.
_COLOUR_BASIS = tuple(tuple(float(v) for v in m.reshape(9)) for m in (_P0, _P1, _P2))  # 3 x (3x3 flattened)
_LUMA = tuple(float(v) for v in _YIQ[0])


def _check_strength(strength: float) -> float:
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or not math.isfinite(strength) \
            or strength < 0:
        raise ValueError(f"augmentation strength must be a number from 0 (identical views) to 1 (strong; up to "
                         f"{MAX_STRENGTH:g} is accepted), got {strength!r}")
    return min(float(strength), MAX_STRENGTH)


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
          normal: bool = False) -> torch.Tensor:
    """Uniform [0, 1) (or standard normal) float32 numbers on ``device``, drawn from ``generator``.

    A generator can only fill tensors on its own device: draw there, then move (a no-op when
    the generator lives where the batch does, as in training).
    """
    draw_on = generator.device if generator is not None else device
    fn = torch.randn if normal else torch.rand
    return fn(shape, generator=generator, device=draw_on).to(device)


@functools.lru_cache(maxsize=128)
def _const(values: tuple, device: torch.device) -> torch.Tensor:
    """A small constant float32 tensor, built once per device (strengths repeat every step)."""
    return torch.tensor(values, dtype=torch.float32, device=device)


def _param_table(u: torch.Tensor, ranges: tuple[tuple[float, float], ...]) -> torch.Tensor:
    """(N, K): column k of ``u`` (uniform in [0, 1)) mapped to uniform in ``ranges[k] = (lo, hi)``."""
    table = _const((tuple(lo for lo, _ in ranges), tuple(hi - lo for lo, hi in ranges)), u.device)
    return torch.addcmul(table[0], u, table[1])


@functools.lru_cache(maxsize=32)
def _base_grid(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(3, H*W) rows x, y, 1 of the pixel centres in grid_sample's [-1, 1] coordinates (align_corners=False)."""
    ys = (torch.arange(h, dtype=torch.float32) * 2 + 1) / h - 1
    xs = (torch.arange(w, dtype=torch.float32) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1), torch.ones(h * w)]).to(device)


@functools.lru_cache(maxsize=32)
def _pixel_centres(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(2, max(H, W)): row centres / H and column centres / W in (0, 1), padded with 2 (never inside)."""
    out = torch.full((2, max(h, w)), 2.0)
    out[0, :h] = (torch.arange(h) + 0.5) / h
    out[1, :w] = (torch.arange(w) + 0.5) / w
    return out.to(device)


def _warp(x: torch.Tensor, theta: list[torch.Tensor], padding: str) -> torch.Tensor:
    """Resample each image through its own affine map.

    ``theta`` = [a, b, c, d, e, f], each (N,): output pixel (x, y) reads the input at
    (a x + b y + c, d x + e y + f), in [-1, 1] coordinates. One matrix product replaces
    ``F.affine_grid``, whose batched product took a third of the whole augmentation on small
    CPU batches.
    """
    n, _, h, w = x.shape
    rows = torch.stack(theta, dim=1).view(2 * n, 3)
    grid = (rows @ _base_grid(h, w, x.device)).view(n, 2, h, w).permute(0, 2, 3, 1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def augment(
    x: torch.Tensor, strength: float, generator: torch.Generator | None = None, *, is_image: bool = True
) -> torch.Tensor:
    """One random view of each sample of a batch; returns a new tensor of ``x``'s shape and dtype.

    ``x`` is ``(N, C, H, W)`` with values in ``[0, 1]`` (``is_image=True``) or ``(N, D)``
    vectors (``is_image=False``). Every sample gets its own random parameters; a seeded
    ``generator`` (on ``x``'s device, or the CPU) makes the views reproducible. ``strength`` 0
    returns an exact copy, 1 is strong, larger values (clamped at 2) are stronger still.

    Images: a random affine warp (rotation, zoom, shift; for RGB a random resized crop with a
    horizontal flip and a small rotation), brightness/contrast jitter (RGB: also saturation,
    hue and random grayscale), light Gaussian noise, pixel dropout and a random erased
    rectangle; the output is clamped to ``[0, 1]``. Flips are used only for 3-channel images,
    because a flipped digit is another digit or none. Vectors: per-feature random scaling,
    Gaussian noise relative to the sample's RMS, and random feature dropout.
    """
    s = _check_strength(strength)
    if not torch.is_floating_point(x):
        raise ValueError(f"augment needs a floating-point tensor, got {x.dtype}: convert with x.float() / 255")
    if is_image and x.dim() != 4:
        raise ValueError(f"images must be a batch of shape (N, C, H, W), got {tuple(x.shape)}; "
                         "for vectors pass is_image=False, for one image use x[None]")
    if not is_image and x.dim() != 2:
        raise ValueError(f"vectors must be a batch of shape (N, D), got {tuple(x.shape)}; "
                         "for images pass is_image=True")
    if s == 0.0 or len(x) == 0:
        return x.clone()
    if not is_image:
        out = _augment_vectors(x, s, generator)
    elif x.shape[1] == 3:
        out = _augment_rgb(x, s, generator)
    else:
        out = _augment_gray(x, s, generator)
    return out.to(x.dtype)


def two_views(
    x: torch.Tensor, strength: float, generator: torch.Generator | None = None, *, is_image: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent random views ``(x1, x2)`` of the batch ``x``, each of ``x``'s shape.

    Both views come from one :func:`augment` call on ``[x; x]``: half the operations of two
    calls, and still a different random draw for every row.
    """
    both = augment(torch.cat([x, x]), strength, generator, is_image=is_image)
    return both[: len(x)], both[len(x) :]


def _augment_vectors(x: torch.Tensor, s: float, generator: torch.Generator | None) -> torch.Tensor:
    n, d = x.shape
    r = _rand((2, n, d), generator, x.device)
    noise = _rand((n, d), generator, x.device, normal=True)
    # Noise relative to each sample's RMS, so it means the same at any data scale. At s = 1 on
    # unit-norm 32-d vectors: noise of norm ~0.3, features scaled by 0.8..1.2, 10 % dropped.
    rms = x.float().pow(2).mean(dim=1, keepdim=True).sqrt()
    scale = 1.0 + 0.2 * s * (2.0 * r[0] - 1.0)
    keep = r[1] >= min(0.1 * s, 0.5)
    return (x * scale + (0.3 * s) * rms * noise) * keep


def _erase_ranges(s: float) -> tuple[tuple[float, float], ...]:
    """Columns of the erasing parameters: half the rectangle's height and width as fractions of
    the image's (sides of 14..40 %, 2..16 % of the area at s = 1), its centre (row, column, as
    fractions), and a coin deciding whether the sample is erased at all."""
    half = (0.07, 0.07 + 0.13 * s)
    return half, half, (0.0, 1.0), (0.0, 1.0), (0.0, 1.0)


def _noise_dropout_erase(y: torch.Tensor, s: float, generator: torch.Generator | None, sigma: torch.Tensor,
                         erase: torch.Tensor) -> torch.Tensor:
    """Add Gaussian noise, drop pixels, zero one rectangle in some samples, clamp to [0, 1].

    ``sigma`` (N,) is each sample's noise level, ``erase`` (N, 5) the columns of
    :func:`_erase_ranges`. The noise is one field per pixel shared by the channels (luminance
    noise: on the CPU the normal draw is the most expensive single step), and the dropout
    reuses it: a pixel is dropped where ``|noise| >= z`` with ``P(|N(0, 1)| >= z) = p``. The noise
    of a dropped pixel is never seen; kept pixels get noise truncated at ``|n| < z`` (z = 2.2 at
    s = 1), a negligible change for one draw saved.
    """
    n, _, h, w = y.shape
    p_drop = min(0.03 * s, 0.3)  # 3 % of the pixels at s = 1
    noise = _rand((n, 1, h, w), generator, y.device, normal=True)
    drop = noise.abs() >= NormalDist().inv_cdf(1.0 - p_drop / 2.0)
    y = y.addcmul_(noise, sigma.view(n, 1, 1, 1))
    # Erasing, Cutout-style (the centre may lie near a border, clipping the rectangle), as one
    # mask for both axes: |pixel centre - rectangle centre| < half side, on (N, 2, max(H, W)).
    half = erase[:, 0:2] * (erase[:, 4:5] < 0.5 * min(s, 1.0))  # half the samples at s = 1; size 0 = none
    inside = (_pixel_centres(h, w, y.device) - erase[:, 2:4, None]).abs() < half[:, :, None]
    drop |= (inside[:, 0, :h, None] & inside[:, 1, None, :w])[:, None]
    return y.masked_fill_(drop, 0.0).clamp_(0.0, 1.0)


def _augment_gray(x: torch.Tensor, s: float, generator: torch.Generator | None) -> torch.Tensor:
    """Digits-like images (any channel count but 3): no flip, black padding, modest geometry.

    At s = 1: rotation +-15 deg, zoom 0.85..1.15, shift +-15 % of the side (+-1.2 px on 8x8,
    +-4 px on 28x28); beyond that a 6 turns into a 9 or leaves the frame. Brightness and
    contrast 0.7..1.3, noise sigma up to 0.05.
    """
    n = len(x)
    rot, shift = math.radians(15.0) * s, 0.3 * s  # [-1, 1] spans the side, so 0.3 = 15 %
    p = _param_table(_rand((n, 12), generator, x.device), (
        (-rot, rot), (1 - 0.15 * s, 1 + 0.15 * s), (-shift, shift), (-shift, shift),
        (1 - 0.3 * s, 1 + 0.3 * s), (1 - 0.3 * s, 1 + 0.3 * s), (0.0, 0.05 * s), *_erase_ranges(s),
    ))
    angle, zoom, tx, ty, bright, contrast, sigma = p[:, :7].unbind(1)
    a, b = angle.cos() / zoom, angle.sin() / zoom
    y = _warp(x, [a, -b, tx, b, a, ty], "zeros")  # zeros: the digits' background is black
    # brightness b and contrast c around the sample mean m: y -> b c y + b (1 - c) m
    gain = bright * contrast
    bias = (bright - gain) * y.mean(dim=(1, 2, 3))
    y = torch.addcmul(bias.view(n, 1, 1, 1), y, gain.view(n, 1, 1, 1))
    return _noise_dropout_erase(y, s, generator, sigma, p[:, 7:])


def _augment_rgb(x: torch.Tensor, s: float, generator: torch.Generator | None) -> torch.Tensor:
    """Natural colour images, SimCLR-style.

    At s = 1: random resized crop of 20..100 % of the area with aspect 3/4..4/3, horizontal flip
    for half the samples, rotation +-10 deg; colour jitter for 80 % of the samples (brightness,
    contrast, saturation 0.6..1.4, hue +-0.1 turn), grayscale for 20 %; then noise and erasing.
    """
    n, _, h, w = x.shape
    s1 = min(s, 1.0)  # probabilities saturate at strength 1
    rot, lo_area, hue = math.radians(10.0) * s, max(0.1, 1 - 0.8 * s), 0.2 * math.pi * s
    aspect = math.log(4 / 3) * s1
    jit = (1 - 0.4 * s, 1 + 0.4 * s)  # >= 0.2 for s <= 2
    p = _param_table(_rand((n, 18), generator, x.device), (
        (-rot, rot), (lo_area, 1.0), (-aspect, aspect), (-1.0, 1.0), (-1.0, 1.0), (0.0, 1.0),
        (0.0, 1.0), jit, jit, jit, (-hue, hue), (0.0, 1.0), (0.0, 0.05 * s), *_erase_ranges(s),
    ))
    angle, area, log_aspect, u_tx, u_ty, u_flip, u_jitter = p[:, :7].unbind(1)
    # Crop of relative size (sx, sy) inside the image, flipped for some: output x reads input sx x + tx.
    ratio = log_aspect.exp()
    sx, sy = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
    tx, ty = (1.0 - sx) * u_tx, (1.0 - sy) * u_ty
    sx = torch.where(u_flip < 0.5 * s1, -sx, sx)
    cos, sin = angle.cos(), angle.sin()
    y = _warp(x, [sx * cos, -sx * sin, tx, sy * sin, sy * cos, ty], "reflection")  # mirrored edges, not black

    # Colour: 20 % of the samples (at s = 1) keep brightness, contrast, saturation and hue as they are.
    jitter = torch.where((u_jitter >= 0.8 * s1)[:, None], _const((1.0, 1.0, 1.0, 0.0), x.device), p[:, 7:11])
    bright, contrast, sat, shift = jitter.unbind(1)
    sat = sat * (p[:, 11] >= 0.2 * s1)  # grayscale = saturation 0
    coef = torch.stack([torch.ones_like(sat), sat * shift.cos(), sat * shift.sin()], dim=1)  # (n, 3)
    gain = bright * contrast
    mat = (coef * gain[:, None]) @ _const(_COLOUR_BASIS, x.device)  # (n, 9)
    # Contrast around the mean luminance, which the colour matrix (before the gain) leaves unchanged.
    mean_luma = y.mean(dim=(2, 3)) @ _const(_LUMA, x.device)
    bias = ((bright - gain) * mean_luma).view(n, 1, 1)
    y = torch.bmm(mat.view(n, 3, 3).to(y.dtype), y.reshape(n, 3, h * w)).add_(bias).view(n, 3, h, w)
    return _noise_dropout_erase(y, s, generator, p[:, 12], p[:, 13:])
