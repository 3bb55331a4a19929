"""STL-10: the binary release ``stl10_binary`` (96x96 colour, 10 classes), read with numpy, no pickle.

Files (as ``stl10_binary.tar.gz`` unpacks them):

* ``train_X.bin`` (5,000 images), ``test_X.bin`` (8,000), ``unlabeled_X.bin`` (100,000): raw
  uint8, 27,648 bytes per image = 3 channels (R, G, B) of 96x96, each channel stored
  **column-major** (the release was written from MATLAB), so ``reshape(n, 3, 96, 96)`` gives
  ``(channel, column, row)`` and one transpose of the last two axes gives ``(C, H, W)``;
* ``train_y.bin``, ``test_y.bin``: one byte per image, labels 1..10 (stored 0..9 here);
* ``class_names.txt``: the ten names, one per line (``fold_indices.txt`` is not used).

The number of images follows from each file's size, which must be a whole number of images and
at most the release's count. ``image_size`` resizes on reading (antialiased bilinear, in chunks
of :data:`CHUNK` images, so memory stays at the output's size): 96 keeps the originals, 32 or
48 make CPU training practical. Everything is held as uint8 until the last step: the labelled
splits come back as float32 (``load_dataset``'s contract), the 100,000 unlabelled images stay
uint8 (:func:`load_stl10_unlabeled`; 2.8 GB at 96 px, 11 GB had they been float32).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .base import DataFormatError, DataNotFoundError, Parts
from .files import file_errors, require_regular
from .progress import Tracker
from .releases import FETCH_HINT

__all__ = ["CHUNK", "STL10_CLASSES", "STL10_COUNTS", "STL10_FILES", "STL10_FOLDER", "load_stl10",
           "load_stl10_unlabeled", "read_stl10_images", "resize_uint8", "stl10_files", "stl10_unlabeled_file"]

STL10_FOLDER = "stl10_binary"
STL10_FILES = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "class_names.txt")
UNLABELED_FILE = "unlabeled_X.bin"
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
#: Images per file in the release: a file holding more is not STL-10.
STL10_COUNTS = {"train_X.bin": 5_000, "test_X.bin": 8_000, UNLABELED_FILE: 100_000}
SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
CHUNK = 2_000
_FIX = "replace it with the file from stl10_binary.tar.gz"


def _folder(root: Path, names: tuple[str, ...]) -> Path | None:
    for d in (root / STL10_FOLDER, root):
        if all((d / n).is_file() for n in names):
            return d
    return None


def stl10_files(root: Path) -> list[Path]:
    """The labelled files in ``root/stl10_binary`` or ``root`` itself; DataNotFoundError naming what is missing."""
    d = _folder(root, STL10_FILES)
    if d is not None:
        return [d / n for n in STL10_FILES]
    d = root / STL10_FOLDER if (root / STL10_FOLDER).is_dir() else root
    missing = [n for n in STL10_FILES if not (d / n).is_file()]
    folders = [n for n in missing if (d / n).is_dir()]
    notes = ("" if root.is_dir() else f"; {root} does not exist") + (
        f"; {', '.join(folders)} {'is a folder' if len(folders) == 1 else 'are folders'}" if folders else "")
    raise DataNotFoundError(
        f"STL-10 files not found (missing: {', '.join(missing)} in {d}{notes}): put the folder {STL10_FOLDER}{os.sep} "
        f"that stl10_binary.tar.gz unpacks to in {root}{os.sep}, {FETCH_HINT}."
    )


def stl10_unlabeled_file(root: Path) -> Path:
    """``unlabeled_X.bin`` next to the labelled files; DataNotFoundError if it is not there."""
    d = stl10_files(root)[0].parent
    path = d / UNLABELED_FILE
    if not path.is_file():
        raise DataNotFoundError(f"STL-10's unlabelled images ({path}) are missing: put {UNLABELED_FILE} from "
                                f"stl10_binary.tar.gz next to train_X.bin, {FETCH_HINT}.")
    return path


def resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    """(n, C, H, W) uint8 -> (n, C, size, size) uint8, antialiased bilinear; unchanged when already that size."""
    if x.shape[-2:] == (size, size):
        return x
    y = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.round_().clamp_(0, 255).to(torch.uint8)


def read_stl10_images(path: Path, image_size: int = SIDE, *, limit: int | None = None,
                      tracker: Tracker | None = None) -> torch.Tensor:
    """The images of one ``*_X.bin`` file as uint8 (n, 3, image_size, image_size), in file order.

    ``limit`` reads only the first ``limit`` images. The file is read in chunks of
    :data:`CHUNK` images; each is transposed from column-major and resized before the next is
    read, so the peak memory is the output plus one chunk.
    """
    size = require_regular(path).st_size
    cap = STL10_COUNTS.get(path.name, STL10_COUNTS[UNLABELED_FILE])
    if size % IMAGE_BYTES or size == 0:
        raise DataFormatError(f"{path} holds {size} bytes, not a whole number of 96x96x3 images "
                              f"({IMAGE_BYTES} bytes each): {_FIX}")
    n = size // IMAGE_BYTES
    if n > cap:
        raise DataFormatError(f"{path} holds {n} images, but the release's file holds {cap}: {_FIX}")
    n = n if limit is None else min(n, limit)
    out = torch.empty((n, 3, image_size, image_size), dtype=torch.uint8)
    with open(path, "rb") as f:
        for start in range(0, n, CHUNK):
            count = min(CHUNK, n - start)
            raw = np.fromfile(f, dtype=np.uint8, count=count * IMAGE_BYTES)
            if raw.size != count * IMAGE_BYTES:
                raise DataFormatError(f"{path} ended early (it changed while it was read): try again")
            images = torch.from_numpy(raw.reshape(count, 3, SIDE, SIDE)).transpose(2, 3)  # column-major -> (C, H, W)
            out[start : start + count] = resize_uint8(images.contiguous(), image_size)
            if tracker is not None:
                tracker.advance(count)
    return out


def _read_labels(path: Path, n: int, images: Path) -> torch.Tensor:
    size = require_regular(path).st_size
    if size != n:
        raise DataFormatError(f"{path} holds {size} labels but {images} holds {n} images: the two files do not "
                              f"belong together; {_FIX}")
    y = np.fromfile(path, dtype=np.uint8, count=n).astype(np.int64)
    if n and (y.min() < 1 or y.max() > 10):
        raise DataFormatError(f"{path} has labels outside 1..10 (found {y.min()}..{y.max()}): {_FIX}")
    return torch.from_numpy(y - 1)


def _class_names(path: Path) -> tuple[str, ...]:
    if require_regular(path).st_size > 4096:
        raise DataFormatError(f"{path} is larger than a list of ten class names: {_FIX}")
    try:
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path} is not a text file of class names ({e}): {_FIX}") from e
    if len(names) != len(STL10_CLASSES):
        raise DataFormatError(f"{path} names {len(names)} classes, but STL-10 has {len(STL10_CLASSES)}: {_FIX}")
    return names


def load_stl10(root: Path, image_size: int = SIDE) -> Parts:
    """The labelled splits: train (5,000) and test (8,000), float32 (n, 3, S, S) in [0, 1], labels 0..9."""
    train_x_path, train_y_path, test_x_path, test_y_path, names_path = stl10_files(root)
    with file_errors(root):
        classes = _class_names(names_path)
        total = sum(min(p.stat().st_size // IMAGE_BYTES, STL10_COUNTS[p.name]) for p in (train_x_path, test_x_path))
        with Tracker("read", f"STL-10 labelled images at {image_size} px", total, unit="image") as t:
            train_x = read_stl10_images(train_x_path, image_size, tracker=t)
            test_x = read_stl10_images(test_x_path, image_size, tracker=t)
        train_y = _read_labels(train_y_path, len(train_x), train_x_path)
        test_y = _read_labels(test_y_path, len(test_x), test_x_path)
    return train_x.float().div_(255.0), train_y, test_x.float().div_(255.0), test_y, classes


def load_stl10_unlabeled(root: str | os.PathLike[str], *, image_size: int = SIDE, limit: int | None = None
                         ) -> torch.Tensor:
    """STL-10's 100,000 unlabelled images as uint8 (n, 3, S, S), cached in-process on the arguments.

    Kept as uint8 (2.8 GB at 96 px, 0.3 GB at 32 px; float32 would be four times that):
    convert each batch with ``x.float() / 255``. ``limit`` keeps the first ``limit`` images.
    The cache key includes the file's size and modification time, so a replaced file is re-read.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive whole number of images or None (= all), got {limit!r}")
    path = stl10_unlabeled_file(Path(os.path.abspath(os.fspath(root))))
    st = path.stat()
    return _unlabeled_cached(str(path), image_size, limit, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=1)
def _unlabeled_cached(path: str, image_size: int, limit: int | None, size: int, mtime_ns: int) -> torch.Tensor:
    del size, mtime_ns  # only part of the cache key
    p = Path(path)
    n = min(p.stat().st_size // IMAGE_BYTES, STL10_COUNTS[UNLABELED_FILE])
    with file_errors(p.parent), Tracker("read", f"STL-10 unlabelled images at {image_size} px",
                                        n if limit is None else min(n, limit), unit="image") as t:
        return read_stl10_images(p, image_size, limit=limit, tracker=t)
