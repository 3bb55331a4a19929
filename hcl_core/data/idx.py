"""MNIST and Fashion-MNIST: the four IDX files of the original archives, plain or gzipped."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..registry import DATASETS
from .base import DataFormatError, DataNotFoundError, Parts
from .files import file_errors
from .releases import FETCH_HINT

__all__ = ["GZIP_MAX_RATIO", "MNIST_FILES", "MNIST_SHAPES", "find_mnist_files", "load_mnist_like", "read_idx"]

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
        folders = [str(d / b) for b in missing for d in dirs if (d / b).is_dir() or (d / f"{b}.gz").is_dir()]
        if folders:
            absent += f"; {', '.join(folders)} {'is a folder' if len(folders) == 1 else 'are folders'}"
        raise DataNotFoundError(
            f"{folder} files not found (missing: {', '.join(missing)}{absent}): put "
            f"{', '.join(MNIST_FILES[:3])} and {MNIST_FILES[3]} (plain or .gz) in {where}{os.sep} "
            f"(torchvision's layout) or directly in {root}{os.sep}, {FETCH_HINT}."
        )
    return found


#: A deflate stream expands at most about 1032-fold, so a gzip file of n bytes holds at most this many times n.
GZIP_MAX_RATIO = 1032
#: What the release's files hold: (images, rows, columns) and labels; a file declaring more is another data set.
MNIST_SHAPES = {MNIST_FILES[0]: (60_000, 28, 28), MNIST_FILES[1]: (60_000,),
                MNIST_FILES[2]: (10_000, 28, 28), MNIST_FILES[3]: (10_000,)}
_FIX = "replace it with a fresh copy of the original file"


def read_idx(path: Path, ndim: int, *, shape: tuple[int, ...] | None = None, name: str = "IDX") -> np.ndarray:
    """An IDX array of unsigned bytes with ``ndim`` dimensions, validated against its header.

    Header: two zero bytes, the type code 0x08 (unsigned byte), the number of dimensions, then
    each dimension as a big-endian uint32; the data must fill the rest of the file exactly. The
    file may be gzipped (recognised by its magic bytes, whatever its name).

    Nothing of the declared size is allocated before the declaration is checked: against
    ``shape`` (the first dimension at most ``shape[0]``, the others exactly ``shape[1:]``),
    against the file's size (a plain file) or what its compressed size can expand to (a gzip
    file, at most ``GZIP_MAX_RATIO``-fold); the data is then decompressed as a stream of at
    most the declared size plus one byte, so a file that declares less than it holds is caught
    without unpacking the rest.
    """
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        size = os.fstat(raw.fileno()).st_size
        f = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
        try:
            dims, header = _read_header(f, path, ndim)
            expected = math.prod(dims)
            _check_declared(path, dims, expected, header, size, gz, shape, name)
            data = _read_exactly(f, expected, path)
        except (OSError, EOFError, zlib.error) as e:
            if not gz:
                raise
            raise DataFormatError(f"{path} is a damaged gzip file ({e}): {_FIX}") from e
        finally:
            if gz:
                f.close()
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _read_header(f, path: Path, ndim: int) -> tuple[tuple[int, ...], int]:
    header = 4 + 4 * ndim
    head = f.read(header)
    if len(head) < header:
        raise DataFormatError(f"{path} is too short ({len(head)} bytes) to be an IDX file: {_FIX}")
    magic = head[:4]
    if magic != bytes((0, 0, 0x08, ndim)):
        raise DataFormatError(
            f"{path} is not an IDX file of unsigned bytes with {ndim} dimension(s): its magic number is "
            f"0x{magic.hex()}, expected 0x{bytes((0, 0, 0x08, ndim)).hex()}; {_FIX}"
        )
    return struct.unpack(f">{ndim}I", head[4:]), header


def _check_declared(path: Path, dims: tuple[int, ...], expected: int, header: int, size: int, gz: bool,
                    shape: tuple[int, ...] | None, name: str) -> None:
    if shape is not None:
        if dims[0] > shape[0]:
            raise DataFormatError(f"{path} declares {dims[0]} items, but {name}'s file holds at most {shape[0]}: "
                                  f"not a file of this data set; {_FIX}")
        if tuple(dims[1:]) != tuple(shape[1:]):
            raise DataFormatError(f"{path} declares items of shape {tuple(dims[1:])}, but {name}'s are "
                                  f"{tuple(shape[1:])}: not a file of this data set; {_FIX}")
    if not gz and size - header != expected:
        raise DataFormatError(f"{path} declares shape {dims} ({expected} bytes of data) but holds {size - header} "
                              f"bytes (truncated or padded): {_FIX}")
    if gz and header + expected > GZIP_MAX_RATIO * size:
        raise DataFormatError(f"{path} declares shape {dims} ({expected} bytes of data), more than a gzip file of "
                              f"{size} bytes can hold: {_FIX}")


def _read_exactly(f, expected: int, path: Path) -> bytes:
    """``expected`` bytes from ``f`` (decompressed as it goes), refusing a file with fewer or more."""
    data = f.read(expected)
    extra = f.read(1)
    if len(data) != expected or extra:
        held = f"{len(data)}" if len(data) < expected else f"more than {expected}"
        raise DataFormatError(f"{path} declares {expected} bytes of data but holds {held} (truncated or padded): "
                              f"{_FIX}")
    return data


def load_mnist_like(name: str, root: Path) -> Parts:
    """(N, 1, H, W) images in [0, 1] (28x28 for the real files) and int64 labels 0..9."""
    files = find_mnist_files(name, root)
    out: list[torch.Tensor] = []
    label = DATASETS[name].label
    for images_file, labels_file in ((MNIST_FILES[0], MNIST_FILES[1]), (MNIST_FILES[2], MNIST_FILES[3])):
        with file_errors(root):
            images = read_idx(files[images_file], 3, shape=MNIST_SHAPES[images_file], name=label)
            labels = read_idx(files[labels_file], 1, shape=MNIST_SHAPES[labels_file], name=label)
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

