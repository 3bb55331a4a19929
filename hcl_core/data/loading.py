"""``load_dataset``: argument checks, one loader per data set, and an in-process cache.

Each name of :data:`hcl_core.registry.DATASETS` has one :class:`_Loader` in ``_LOADERS``: the
function that builds its tensors, the files it reads (whose modification times join the cache
key, so replaced files are re-read), and the keyword arguments of :func:`load_dataset` it uses
(only those join the cache key, so an unused argument never causes a reload).
"""

from __future__ import annotations

import functools
import numbers
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..registry import DATASETS
from .base import DataFormatError, Dataset, Parts
from .builtin import load_digits, load_synthetic
from .cifar import cifar10_files, cifar100_files, load_cifar10, load_cifar100
from .idx import find_mnist_files, load_mnist_like
from .image_folder import image_folder_dirs, load_image_folder
from .mnist_1d import load_mnist1d
from .npz import load_npz, npz_files
from .splits import stratified_subset
from .stl10 import load_stl10, stl10_files
from .twins import load_twins

__all__ = ["TWINS_CLASSES", "TWINS_GAP", "clear_cache", "load_dataset"]

#: The twins defaults (:mod:`hcl_core.data.twins`): the gap between twins and the number of classes.
TWINS_GAP = 0.5
TWINS_CLASSES = 10

_CACHE_SIZE = 8  # CIFAR as float32 is ~0.7 GB, so keep only a few data sets alive
_LOAD_LOCK = threading.Lock()  # the app loads from several threads; load each data set once


@dataclass(frozen=True)
class _Loader:
    """How one data set is read.

    ``load(root, **options)`` returns its :data:`Parts` (``root`` is None for data sets that need
    no files); ``files(root)`` lists what it reads and raises ``DataNotFoundError`` when
    something is missing; ``options`` names the :func:`load_dataset` keywords it reads.
    """

    load: Callable[..., Parts]
    files: Callable[[Path], list[Path]] | None = None
    options: tuple[str, ...] = ()


_LOADERS: dict[str, _Loader] = {
    "digits": _Loader(lambda root: load_digits()),
    "synthetic": _Loader(lambda root, synthetic_overlap: load_synthetic(synthetic_overlap),
                         options=("synthetic_overlap",)),
    "mnist1d": _Loader(lambda root: load_mnist1d()),
    "twins": _Loader(lambda root, twins_gap, twins_classes: load_twins(twins_gap, twins_classes),
                     options=("twins_gap", "twins_classes")),
    "mnist": _Loader(lambda root: load_mnist_like("mnist", root),
                     lambda root: list(find_mnist_files("mnist", root).values())),
    "fashion_mnist": _Loader(lambda root: load_mnist_like("fashion_mnist", root),
                             lambda root: list(find_mnist_files("fashion_mnist", root).values())),
    "cifar10": _Loader(load_cifar10, cifar10_files),
    "cifar100": _Loader(load_cifar100, cifar100_files),
    "stl10": _Loader(lambda root, image_size: load_stl10(root, image_size), stl10_files, options=("image_size",)),
    # A directory's mtime changes when entries are added, removed or renamed in it.
    "image_folder": _Loader(lambda root, image_size: load_image_folder(root, image_size), image_folder_dirs,
                            options=("image_size",)),
    "npz": _Loader(load_npz, npz_files),
}

if set(_LOADERS) != set(DATASETS):  # a registry record without a loader, or the reverse
    raise AssertionError(f"data loaders {sorted(_LOADERS)} do not match the registry {sorted(DATASETS)}")


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    max_train: int | None = None,
    max_test: int | None = None,
    synthetic_overlap: float = 0.3,
    twins_gap: float = TWINS_GAP,
    twins_classes: int = TWINS_CLASSES,
    image_size: int = 32,
) -> Dataset:
    """Load data set ``name`` (a key of :data:`DATASETS`) as a :class:`Dataset`.

    ``root`` is the folder holding the files of the data sets that need one (ignored by the
    others). ``max_train`` / ``max_test`` keep at most that many samples, chosen
    deterministically and stratified by class. ``synthetic_overlap`` (0..1) is the class overlap
    of ``synthetic``; ``twins_gap`` (0..2) the distance between the twin classes of ``twins`` and
    ``twins_classes`` (2..40) its number of classes; ``image_size`` the side length
    ``image_folder`` resizes to.

    Results are cached in-process on these arguments (and on the modification times of the
    files read, so replaced files are re-read): repeated calls return the same tensors, which
    must be treated as read-only.

    Raises ``ValueError`` for an unknown name, a missing ``root`` or a bad parameter,
    :class:`DataNotFoundError` when the files are not there and :class:`DataFormatError` when
    they are corrupt.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}")
    spec, loader = DATASETS[name], _LOADERS[name]
    # Every argument is validated, whichever data set reads it.
    options = {
        "synthetic_overlap": _check_overlap(synthetic_overlap),
        "twins_gap": _check_number("twins_gap", twins_gap, 0.0, 2.0, "0 (identical twins) to 2 (as far apart as "
                                   "the groups)"),
        "twins_classes": _check_whole("twins_classes", twins_classes, 2, 40),
        "image_size": _check_image_size(image_size),
    }
    max_train = _check_limit("max_train", max_train)
    max_test = _check_limit("max_test", max_test)
    root_key: str | None = None
    if spec.needs_root:
        if root is None:
            bundled = ", ".join(n for n, d in DATASETS.items() if not d.needs_root)
            raise ValueError(f"data set {name!r} is read from local files: pass root, the folder holding them "
                             f"(only {bundled} need no files)")
        root_key = os.path.abspath(os.fspath(root))
    # Locating the files first raises DataNotFoundError early and gives the cache a fingerprint.
    fingerprint = _fingerprint(loader, Path(root_key)) if root_key is not None and loader.files else ()
    used = tuple((k, options[k]) for k in loader.options)
    with _LOAD_LOCK:
        return _load_cached(name, root_key, max_train, max_test, used, fingerprint)


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


def _check_number(field: str, value: float, low: float, high: float, meaning: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= float(value) <= high:
        raise ValueError(f"{field} must be a number from {meaning}, got {value!r}")
    return float(value)


def _check_whole(field: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{field} must be a whole number from {low} to {high}, got {value!r}")
    return int(value)


def _check_image_size(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 4 <= value <= 1024:
        raise ValueError(f"image_size must be a whole number of pixels from 4 to 1024, got {value!r}")
    return int(value)


def _fingerprint(loader: _Loader, root: Path) -> tuple:
    """``(path, mtime_ns, size)`` of what the loader will read; raises DataNotFoundError if absent."""
    assert loader.files is not None
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in loader.files(root))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _load_cached(
    name: str,
    root: str | None,
    max_train: int | None,
    max_test: int | None,
    options: tuple[tuple[str, Any], ...],
    fingerprint: tuple,
) -> Dataset:
    del fingerprint  # only part of the cache key
    spec = DATASETS[name]
    train_x, train_y, test_x, test_y, classes = _LOADERS[name].load(
        Path(root) if root is not None else None, **dict(options)
    )
    if spec.class_names is not None:
        # Fixed names come from the registry; a file that disagrees on their number is another data set.
        if len(classes) != len(spec.class_names):
            raise DataFormatError(f"{name} has {len(spec.class_names)} classes, but its files name {len(classes)}: "
                                  f"use the original files of the data set")
        classes = spec.class_names
    if max_train is not None and max_train < len(train_y):
        keep = stratified_subset(train_y.numpy(), max_train)
        train_x, train_y = train_x[keep].contiguous(), train_y[keep].contiguous()
    if max_test is not None and max_test < len(test_y):
        keep = stratified_subset(test_y.numpy(), max_test)
        test_x, test_y = test_x[keep].contiguous(), test_y[keep].contiguous()
    # Where the files decide the shape, 4-D arrays are images.
    is_image = spec.is_image if spec.input_shape is not None else train_x.dim() == 4
    return Dataset(name, train_x, train_y, test_x, test_y, tuple(classes), is_image, spec.augmentation or "")
