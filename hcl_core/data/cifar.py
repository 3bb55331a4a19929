"""CIFAR-10 and CIFAR-100: the binary release (plain bytes, preferred) or the python batches (pickles).

Both releases hold the same images. The binary one (``cifar-10-batches-bin``,
``cifar-100-binary``) is fixed-size records read with numpy: nothing in it is interpreted
beyond a label byte and 3,072 pixel bytes, so it is used whenever it is complete. The python
release (``cifar-10-batches-py``, ``cifar-100-python``) is pickles, read with the allow-list
unpickler of :mod:`.safe_pickle` within limits sized to the real files.

A record (binary) or a row of ``data`` (pickle) is 3,072 bytes: the red, green and blue 32x32
planes, each row-major, so ``view(n, 3, 32, 32)`` is the image in ``(C, H, W)`` order.
"""

from __future__ import annotations

import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import DataFormatError, DataNotFoundError, Parts
from .files import file_errors
from .progress import Tracker
from .releases import FETCH_HINT
from .safe_pickle import PickleLimits, safe_load

__all__ = ["CIFAR10_BINARY", "CIFAR10_FILES", "CIFAR100_BINARY", "CIFAR100_FILES", "cifar10_files", "cifar100_files",
           "load_cifar10", "load_cifar100", "read_binary_batch"]

CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")
CIFAR10_BINARY = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin", "batches.meta.txt")
CIFAR100_BINARY = ("train.bin", "test.bin", "fine_label_names.txt")

_PIXELS = 3 * 32 * 32
#: The largest real pickle (CIFAR-100's train) is 155 MB; a file far larger is not one of them.
_PICKLE_LIMITS = PickleLimits(max_bytes=256 * 2**20)
_FIX = "replace it with the file from the data set's original archive"


@dataclass(frozen=True)
class _Release:
    """Where one release of a CIFAR data set lives and what it holds."""

    folder: str
    names: tuple[str, ...]
    archive: str


_RELEASES = {
    "cifar10": (_Release("cifar-10-batches-bin", CIFAR10_BINARY, "cifar-10-binary.tar.gz"),
                _Release("cifar-10-batches-py", CIFAR10_FILES, "cifar-10-python.tar.gz")),
    "cifar100": (_Release("cifar-100-binary", CIFAR100_BINARY, "cifar-100-binary.tar.gz"),
                 _Release("cifar-100-python", CIFAR100_FILES, "cifar-100-python.tar.gz")),
}
#: Images per file in the real releases: a file holding more is not one of them.
_MAX_IMAGES = {"cifar10": {"train": 10_000, "test": 10_000}, "cifar100": {"train": 50_000, "test": 10_000}}


def _find(name: str, root: Path) -> tuple[bool, list[Path]]:
    """``(binary?, paths)`` of the first complete release in ``root/<folder>`` or ``root`` itself."""
    for release in _RELEASES[name]:
        for d in (root / release.folder, root):
            if all((d / n).is_file() for n in release.names):
                return release.names is _RELEASES[name][0].names, [d / n for n in release.names]
    binary, pickles = _RELEASES[name]
    d = root / pickles.folder if (root / pickles.folder).is_dir() else root
    missing = [n for n in pickles.names if not (d / n).is_file()]
    folders = [n for n in missing if (d / n).is_dir()]
    absent = "" if root.is_dir() else f"; {root} does not exist"
    folders_note = f"; {', '.join(folders)} {'is a folder' if len(folders) == 1 else 'are folders'}" if folders else ""
    raise DataNotFoundError(
        f"CIFAR files not found (missing: {', '.join(missing)} in {d}{folders_note}{absent}): put the folder "
        f"{pickles.folder}{os.sep} that {pickles.archive} unpacks to, or {binary.folder}{os.sep} from "
        f"{binary.archive}, in {root}{os.sep}, {FETCH_HINT}."
    )


def cifar10_files(root: Path) -> list[Path]:
    """The files :func:`load_cifar10` reads: the binary release when complete, else the pickles."""
    return _find("cifar10", root)[1]


def cifar100_files(root: Path) -> list[Path]:
    """The files :func:`load_cifar100` reads: the binary release when complete, else the pickles."""
    return _find("cifar100", root)[1]


# --------------------------------------------------------------------------------------------
# Binary release
# --------------------------------------------------------------------------------------------


def read_binary_batch(path: Path, label_bytes: int, num_classes: int, max_images: int,
                      label_index: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Records of ``label_bytes`` label bytes then 3,072 pixel bytes -> uint8 (n, 3, 32, 32), int64 (n,).

    CIFAR-10 records have one label byte; CIFAR-100's two (coarse, then fine), of which
    ``label_index`` picks one (default: the last). The number of records follows from the
    file's size, which must be a whole number of records and at most ``max_images`` of them.
    """
    record = label_bytes + _PIXELS
    size = path.stat().st_size
    if size % record or size == 0:
        raise DataFormatError(f"{path} holds {size} bytes, not a whole number of {record}-byte CIFAR records: {_FIX}")
    n = size // record
    if n > max_images:
        raise DataFormatError(f"{path} holds {n} records, but the release's file holds at most {max_images}: {_FIX}")
    raw = np.fromfile(path, dtype=np.uint8, count=size).reshape(n, record)
    if len(raw) != n:  # the file shrank while being read
        raise DataFormatError(f"{path} changed while it was read: try again")
    labels = raw[:, label_bytes - 1 if label_index is None else label_index].astype(np.int64)
    if n and int(labels.max()) >= num_classes:
        raise DataFormatError(f"{path} has label {int(labels.max())}, outside 0..{num_classes - 1}: {_FIX}")
    x = torch.from_numpy(np.ascontiguousarray(raw[:, label_bytes:])).view(n, 3, 32, 32)
    return x, torch.from_numpy(labels)


def _label_names(path: Path, expected: int) -> tuple[str, ...]:
    """One class name per non-empty line (``batches.meta.txt``, ``fine_label_names.txt``)."""
    if path.stat().st_size > 64 * 1024:
        raise DataFormatError(f"{path} is larger than a list of {expected} class names: {_FIX}")
    try:
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path} is not a text file of class names ({e}): {_FIX}") from e
    if len(names) != expected:
        raise DataFormatError(f"{path} names {len(names)} classes, but the data set has {expected}: {_FIX}")
    return names


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0)


def _load_binary(name: str, paths: list[Path]) -> Parts:
    limits = _MAX_IMAGES[name]
    if name == "cifar10":
        classes = _label_names(paths[-1], 10)
        batches = paths[:6]
        label_bytes, max_images = 1, [limits["train"]] * 5 + [limits["test"]]
    else:
        classes = _label_names(paths[2], 100)
        batches = paths[:2]
        label_bytes, max_images = 2, [limits["train"], limits["test"]]
    parts = []
    with Tracker("read", f"{name} ({paths[0].parent.name})", sum(p.stat().st_size for p in batches)) as t:
        for path, cap in zip(batches, max_images, strict=True):
            parts.append(read_binary_batch(path, label_bytes, len(classes), cap))
            t.advance(path.stat().st_size)
    train, test = parts[:-1], parts[-1]
    return (_to_float(torch.cat([b[0] for b in train])), torch.cat([b[1] for b in train]), _to_float(test[0]),
            test[1], classes)


# --------------------------------------------------------------------------------------------
# Python release (pickles)
# --------------------------------------------------------------------------------------------


def _load_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle as a dict with ``str`` keys (the files were written by Python 2: bytes keys)."""
    try:
        with open(path, "rb") as f:
            obj = safe_load(f, limits=_PICKLE_LIMITS)
    except pickle.UnpicklingError as e:
        raise DataFormatError(f"{path} was not loaded: {e}; use the original file from the data set's archive") from e
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError,
            RecursionError, struct.error) as e:
        raise DataFormatError(f"{path} is not a valid pickle ({type(e).__name__}: {e}): {_FIX}") from e
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path} holds a {type(obj).__name__}, but a CIFAR file holds a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _names(meta: dict[str, Any], key: str, path: Path) -> tuple[str, ...]:
    names = meta.get(key)
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataFormatError(f"{path} has no list {key!r} of class names: use the original meta file")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def _cifar_batch(path: Path, label_key: str, num_classes: int, max_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch: ``data`` uint8 (n, 3072) -> uint8 (n, 3, 32, 32), and its labels."""
    batch = _load_pickle(path)
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataFormatError(f"{path}: 'data' must be a uint8 array of shape (n, 3072), got {got}")
    if len(data) > max_images:
        raise DataFormatError(f"{path} holds {len(data)} images, but the release's file holds at most {max_images}")
    # A flat list of whole numbers, checked element by element before numpy sees it (numpy would
    # walk a nested structure of any size).
    if not isinstance(labels, (list, tuple, np.ndarray)) or (
            not isinstance(labels, np.ndarray) and not all(type(v) is int for v in labels)):
        raise DataFormatError(f"{path} has no list {label_key!r} of whole-number labels")
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) != len(data):
        raise DataFormatError(f"{path} holds {len(data)} images but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataFormatError(f"{path} has labels outside 0..{num_classes - 1}")
    return torch.from_numpy(np.ascontiguousarray(data)).view(-1, 3, 32, 32), torch.from_numpy(y)


def _load_pickles(name: str, paths: list[Path]) -> Parts:
    limits = _MAX_IMAGES[name]
    if name == "cifar10":
        classes = _names(_load_pickle(paths[-1]), "label_names", paths[-1])
        batches, label_key, caps = paths[:6], "labels", [limits["train"]] * 5 + [limits["test"]]
    else:
        classes = _names(_load_pickle(paths[2]), "fine_label_names", paths[2])
        batches, label_key, caps = paths[:2], "fine_labels", [limits["train"], limits["test"]]
    parts = []
    with Tracker("read", f"{name} ({paths[0].parent.name})", sum(p.stat().st_size for p in batches)) as t:
        for path, cap in zip(batches, caps, strict=True):
            parts.append(_cifar_batch(path, label_key, len(classes), cap))
            t.advance(path.stat().st_size)
    train, test = parts[:-1], parts[-1]
    return (_to_float(torch.cat([b[0] for b in train])), torch.cat([b[1] for b in train]), _to_float(test[0]),
            test[1], classes)


def load_cifar10(root: Path) -> Parts:
    binary, paths = _find("cifar10", root)
    with file_errors(root):
        return _load_binary("cifar10", paths) if binary else _load_pickles("cifar10", paths)


def load_cifar100(root: Path) -> Parts:
    binary, paths = _find("cifar100", root)
    with file_errors(root):
        return _load_binary("cifar100", paths) if binary else _load_pickles("cifar100", paths)
