"""CIFAR-10 and CIFAR-100: the python batches of the original archives, read with a safe unpickler."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import NO_DOWNLOAD, DataFormatError, DataNotFoundError, Parts
from .safe_pickle import safe_load

__all__ = ["CIFAR10_FILES", "CIFAR100_FILES", "cifar10_files", "cifar100_files", "load_cifar10",
           "load_cifar100"]

CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")


def _load_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle as a dict with ``str`` keys (the files were written by Python 2: bytes keys)."""
    try:
        with open(path, "rb") as f:
            obj = safe_load(f)
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
        f"to, or directly in {root}{os.sep}; {NO_DOWNLOAD}."
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


def cifar10_files(root: Path) -> list[Path]:
    return _find_cifar_files(root, "cifar-10-batches-py", CIFAR10_FILES, "cifar-10-python.tar.gz")


def cifar100_files(root: Path) -> list[Path]:
    return _find_cifar_files(root, "cifar-100-python", CIFAR100_FILES, "cifar-100-python.tar.gz")


def load_cifar10(root: Path) -> Parts:
    paths = cifar10_files(root)
    classes = _names(_load_pickle(paths[-1]), "label_names", paths[-1])
    train = [_cifar_batch(p, "labels", len(classes)) for p in paths[:5]]
    test_x, test_y = _cifar_batch(paths[5], "labels", len(classes))
    return torch.cat([b[0] for b in train]), torch.cat([b[1] for b in train]), test_x, test_y, classes


def load_cifar100(root: Path) -> Parts:
    paths = cifar100_files(root)
    classes = _names(_load_pickle(paths[2]), "fine_label_names", paths[2])
    train_x, train_y = _cifar_batch(paths[0], "fine_labels", len(classes))
    test_x, test_y = _cifar_batch(paths[1], "fine_labels", len(classes))
    return train_x, train_y, test_x, test_y, classes
