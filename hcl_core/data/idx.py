"""MNIST and Fashion-MNIST: the four IDX files of the original archives, plain or gzipped."""

from __future__ import annotations

import gzip
import math
import os
import struct
from pathlib import Path

import numpy as np
import torch

from ..registry import DATASETS
from .base import NO_DOWNLOAD, DataFormatError, DataNotFoundError, Parts

__all__ = ["MNIST_FILES", "find_mnist_files", "load_mnist_like", "read_idx"]

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_MNIST_FOLDER = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def find_mnist_files(name: str, root: Path) -> dict[str, Path]:
    """The four IDX files, plain or .gz, in ``root/<Folder>/raw``, ``root/raw`` or ``root`` itself."""
    folder = _MNIST_FOLDER[name]
    dirs = (root / folder / "raw", root / "raw", root)
    found: dict[str, Path] = {}
    for base in MNIST_FILES:
        # Some mirrors spell the files with a dot: train-images.idx3-ubyte.
        stems = (base, base.replace("-idx", ".idx"))
        candidates = (d / f"{stem}{ext}" for d in dirs for stem in stems for ext in ("", ".gz"))
        path = next((p for p in candidates if p.is_file()), None)
        if path is not None:
            found[base] = path
    missing = [b for b in MNIST_FILES if b not in found]
    if missing:
        where = root / folder / "raw"
        absent = "" if root.is_dir() else f"; {root} does not exist"
        raise DataNotFoundError(
            f"{folder} files not found (missing: {', '.join(missing)}{absent}): put "
            f"{', '.join(MNIST_FILES[:3])} and {MNIST_FILES[3]} (plain or .gz) in {where}{os.sep} "
            f"(torchvision's layout) or directly in {root}{os.sep}; {NO_DOWNLOAD}."
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


def read_idx(path: Path, ndim: int) -> np.ndarray:
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


def load_mnist_like(name: str, root: Path) -> Parts:
    """(N, 1, H, W) images in [0, 1] (28x28 for the real files) and int64 labels 0..9."""
    files = find_mnist_files(name, root)
    out: list[torch.Tensor] = []
    for images_file, labels_file in ((MNIST_FILES[0], MNIST_FILES[1]), (MNIST_FILES[2], MNIST_FILES[3])):
        images = read_idx(files[images_file], 3)
        labels = read_idx(files[labels_file], 1)
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
    return out[0], out[1], out[2], out[3], DATASETS[name].class_names or ()

