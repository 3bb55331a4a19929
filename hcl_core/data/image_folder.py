"""Your own images: ``root/<class>/*.png`` (or ``root/train/<class>`` and ``root/test/<class>``).

What a folder may hold, and what happens otherwise (every failure one line naming the path):

* images within a pixel budget (:data:`PIXEL_BUDGET`, Pillow's own default bound): a larger one
  (a "decompression bomb": a small file declaring a huge canvas) is refused from its header,
  before anything is decoded, whatever ``PIL.Image.MAX_IMAGE_PIXELS`` is set to;
* at most :data:`MAX_FOLDERS` folders and :data:`MAX_IMAGES` images, so pointing the data root
  at ``/`` or a home folder is refused within seconds instead of scanning a whole disk;
* symbolic links: class folders and image files that are links are followed (a folder of
  links into a shared data set works); links to folders *inside* a class folder are not
  descended into (so a link cannot make the scan loop); a broken link is reported as a file
  that vanished;
* pipes, sockets and devices named like images are refused (opening a pipe would block), as
  are unreadable files and folders; a file or folder that disappears while the folder is
  being read is reported as such.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .base import DataFormatError, DataNotFoundError, Parts
from .files import file_errors, require_regular
from .progress import Tracker
from .splits import stratified_split

__all__ = ["IMAGE_EXTENSIONS", "MAX_FOLDERS", "MAX_IMAGES", "PIXEL_BUDGET", "image_folder_dirs", "load_image_folder"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
#: Pixels (width x height) an image may have: Pillow's default ``MAX_IMAGE_PIXELS`` (a 9,459 x 9,459 canvas).
PIXEL_BUDGET = 89_478_485
#: Folders and images a data root may hold; far more than an in-memory data set can use.
MAX_FOLDERS = 20_000
MAX_IMAGES = 500_000


def _image_folder_help(root: Path) -> str:
    return (f"put one subfolder per class holding its images in {root}{os.sep} (e.g. {root / 'cat' / '001.png'}), "
            f"or train{os.sep} and test{os.sep} folders that each hold such class subfolders")


def _is_split_layout(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "test").is_dir()


def _raise_walk_error(root: Path):
    def onerror(e: OSError) -> None:
        with file_errors(root):
            raise e
    return onerror


def _walk(top: Path, root: Path, budget: list[int]) -> Iterator[tuple[Path, list[str], list[str]]]:
    """``os.walk(top)`` without hidden entries, raising on unreadable folders and beyond the budget.

    ``budget`` = [folders left, files left], shared by the walks of one scan.
    """
    for dirpath, dirnames, filenames in os.walk(top, onerror=_raise_walk_error(root)):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        budget[0] -= len(dirnames)
        budget[1] -= len(filenames)
        if budget[0] < 0 or budget[1] < 0:
            raise DataFormatError(
                f"{root} holds more than {MAX_FOLDERS} folders or {MAX_IMAGES} files: too many to be one image data "
                f"set (is it a whole disk or home folder?); {_image_folder_help(root)}")
        yield Path(dirpath), dirnames, filenames


def _fresh_budget() -> list[int]:
    return [MAX_FOLDERS, MAX_IMAGES]


def image_folder_dirs(root: Path) -> list[Path]:
    """Folders whose contents define the data set (for the cache fingerprint)."""
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataNotFoundError(f"The image folder {root} {what}: {_image_folder_help(root)}.")
    if root == Path(root.anchor):
        raise DataFormatError(f"{root} is the root of the file system, not an image folder: "
                              f"{_image_folder_help(Path('/path/to/images'))}")
    tops = [root / "train", root / "test"] if _is_split_layout(root) else [root]
    dirs = [root, *tops] if tops[0] != root else [root]
    budget = _fresh_budget()
    for top in tops:
        for dirpath, dirnames, _ in _walk(top, root, budget):
            dirs.extend(dirpath / d for d in dirnames)
    return dirs


def _scan_classes(top: Path, root: Path, budget: list[int]) -> dict[str, list[Path]]:
    """``{class name: sorted image paths}`` for the class subfolders of ``top`` (searched recursively)."""
    out: dict[str, list[Path]] = {}
    with file_errors(root):
        classes = sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith("."))
    for cls in classes:
        files = sorted(
            dirpath / f
            for dirpath, _, filenames in _walk(cls, root, budget)
            for f in filenames
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
        )
        if files:
            out[cls.name] = files
    return out


def _open(path: Path):
    """``Image.open`` of a regular file within :data:`PIXEL_BUDGET`, refusing anything else in one line."""
    from PIL import Image

    require_regular(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataFormatError(f"{path} is too large to open safely ({e}); shrink it below {PIXEL_BUDGET:,} pixels "
                              f"or remove it") from None
    if img.width * img.height > PIXEL_BUDGET:
        img.close()
        raise DataFormatError(f"{path} has {img.width} x {img.height} pixels, more than the {PIXEL_BUDGET:,} an image "
                              f"may have: shrink it or remove it")
    return img


def _unreadable(path: Path, e: Exception) -> DataFormatError:
    return DataFormatError(f"{path} could not be read as an image ({e}): remove or replace it")


def _read_images(paths: list[Path], size: int, mode: str, root: Path) -> torch.Tensor:
    """(N, C, size, size) float32 in [0, 1]; C = 1 for mode 'L', 3 for 'RGB'."""
    from PIL import Image

    arrays = []
    with Tracker("read", f"images in {root.name or root}", len(paths), unit="image") as t, file_errors(root):
        for p in paths:  # decoding is per file by nature; this runs once per data set, then is cached
            with _image_errors(p), _open(p) as img:
                img.draft(mode, (size, size))  # JPEG: decode at a fraction of the size when that suffices
                img = img.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
                arrays.append(np.asarray(img, dtype=np.uint8))
            t.advance(1)
    stack = np.stack(arrays) if arrays else np.zeros((0, size, size), np.uint8)
    x = torch.from_numpy(stack).float().div_(255.0)
    return x.unsqueeze(1) if mode == "L" else x.permute(0, 3, 1, 2).contiguous()


@contextlib.contextmanager
def _image_errors(p: Path) -> Iterator[None]:
    """A decoder's error on image ``p`` as one line naming it (errors that already name a file pass)."""
    try:
        yield
    except (DataFormatError, DataNotFoundError):
        raise
    except OSError as e:
        if e.filename is not None:
            raise
        raise _unreadable(p, e) from e
    except (ValueError, SyntaxError) as e:
        raise _unreadable(p, e) from e


def _image_mode(paths: list[Path], root: Path) -> str:
    """'L' when every image is grayscale, otherwise 'RGB' (opening reads only the header)."""
    with file_errors(root):
        for p in paths:
            with _image_errors(p), _open(p) as img:
                if img.mode not in _GRAY_MODES:
                    return "RGB"
    return "L"


def load_image_folder(root: Path, size: int) -> Parts:
    image_folder_dirs(root)  # raises if the folder is missing
    budget = _fresh_budget()
    if _is_split_layout(root):
        train_map, test_map = _scan_classes(root / "train", root, budget), _scan_classes(root / "test", root, budget)
        classes = tuple(sorted(set(train_map) | set(test_map)))
    else:
        train_map, test_map = _scan_classes(root, root, budget), {}
        classes = tuple(train_map)
    if not classes:
        raise DataNotFoundError(f"No class folders with images ({', '.join(IMAGE_EXTENSIONS)}) found in {root}: "
                                f"{_image_folder_help(root)}.")
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
    mode = _image_mode(train_paths + test_paths, root)
    if not test_map:
        tr, te = stratified_split(train_labels)
        test_paths, test_labels = [train_paths[i] for i in te], train_labels[te]
        train_paths, train_labels = [train_paths[i] for i in tr], train_labels[tr]
    if not train_paths or not test_paths:
        which = "training" if not train_paths else "test"
        raise DataNotFoundError(f"No {which} images found in {root}: {_image_folder_help(root)}, with at least "
                                f"two images per class so that 20 % can be held out for testing.")
    return (_read_images(train_paths, size, mode, root), torch.from_numpy(train_labels),
            _read_images(test_paths, size, mode, root), torch.from_numpy(test_labels), classes)
