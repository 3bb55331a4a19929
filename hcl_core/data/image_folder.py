"""Your own images: ``root/<class>/*.png`` (or ``root/train/<class>`` and ``root/test/<class>``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .base import NO_DOWNLOAD, DataFormatError, DataNotFoundError, Parts
from .splits import stratified_split

__all__ = ["IMAGE_EXTENSIONS", "image_folder_dirs", "load_image_folder"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


def _image_folder_help(root: Path) -> str:
    return (f"put one subfolder per class holding its images in {root}{os.sep} (e.g. {root / 'cat' / '001.png'}), "
            f"or train{os.sep} and test{os.sep} folders that each hold such class subfolders")


def _is_split_layout(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "test").is_dir()


def image_folder_dirs(root: Path) -> list[Path]:
    """Folders whose contents define the data set (for the cache fingerprint)."""
    if not root.is_dir():
        raise DataNotFoundError(f"The image folder {root} does not exist: {_image_folder_help(root)}; "
                                f"{NO_DOWNLOAD}.")
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


def load_image_folder(root: Path, size: int) -> Parts:
    image_folder_dirs(root)  # raises if the folder is missing
    if _is_split_layout(root):
        train_map, test_map = _scan_classes(root / "train"), _scan_classes(root / "test")
        classes = tuple(sorted(set(train_map) | set(test_map)))
    else:
        train_map, test_map = _scan_classes(root), {}
        classes = tuple(train_map)
    if not classes:
        raise DataNotFoundError(f"No class folders with images ({', '.join(IMAGE_EXTENSIONS)}) found in {root}: "
                                f"{_image_folder_help(root)}; {NO_DOWNLOAD}.")
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
        tr, te = stratified_split(train_labels)
        test_paths, test_labels = [train_paths[i] for i in te], train_labels[te]
        train_paths, train_labels = [train_paths[i] for i in tr], train_labels[tr]
    if not train_paths or not test_paths:
        which = "training" if not train_paths else "test"
        raise DataNotFoundError(f"No {which} images found in {root}: {_image_folder_help(root)}, with at least "
                                f"two images per class so that 20 % can be held out for testing.")
    return (_read_images(train_paths, size, mode), torch.from_numpy(train_labels),
            _read_images(test_paths, size, mode), torch.from_numpy(test_labels), classes)

