"""Your own arrays: one ``.npz`` file holding ``x_train``, ``y_train``, ``x_test``, ``y_test``.

Optional: ``class_names``, a 1-D array of strings. Samples may be vectors ``(N, D)``, signals
``(N, C, L)`` or images ``(N, C, H, W)``; inputs of any numeric type become float32 (images
stored as uint8 are divided by 255, float images must already lie in ``[0, 1]``); labels are
whole numbers ``0 .. K - 1``.

The file is never unpickled (``allow_pickle=False``), and every member's shape and type are read
from its ``.npy`` header before any array is allocated, so a header that declares an absurd
shape, an object array or a mismatch between the arrays is refused with one line naming the
key and the fix, before memory is spent on it.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import torch
from numpy.lib import format as npy_format

from .base import DataFormatError, DataNotFoundError, Parts

__all__ = ["NPZ_KEYS", "NPZ_MAX_ELEMENTS", "load_npz", "npz_files"]

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
#: Refused above this many input values in all (4 GB as float32), whatever the file's size.
NPZ_MAX_ELEMENTS = 1_000_000_000
_EXAMPLE = "np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"


def npz_files(root: Path) -> list[Path]:
    """``[root]`` when it is a file; DataNotFoundError says what to pass otherwise."""
    if root.is_file():
        return [root]
    what = "is a folder" if root.is_dir() else "does not exist"
    raise DataNotFoundError(f"{root} {what}: pass the path of one .npz file written with {_EXAMPLE}")


def _headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{key: (shape, dtype)}`` of every ``.npy`` member, read from the headers alone."""
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                key = info.filename[: -len(".npy")]
                with z.open(info) as f:
                    version = npy_format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = npy_format.read_array_header_1_0(f)
                    else:
                        shape, _, dtype = npy_format.read_array_header_2_0(f)
                out[key] = (tuple(shape), dtype)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise DataFormatError(f"{path} is not a readable .npz file ({e}): write it with {_EXAMPLE}") from e
    return out


def _check(path: Path, headers: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """Refuse missing keys, non-numeric types and shapes that do not fit together, before loading."""
    missing = [k for k in NPZ_KEYS if k not in headers]
    if missing:
        found = ", ".join(sorted(headers)) or "no arrays"
        raise DataFormatError(f"{path} lacks {', '.join(missing)} (it holds {found}): save all four with {_EXAMPLE}")
    for key in NPZ_KEYS:
        shape, dtype = headers[key]
        if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
            raise DataFormatError(f"{path}: {key} has type {dtype}, not numbers: store it as a numeric array "
                                  f"(float32 inputs, integer labels)")
    total = sum(math.prod(headers[k][0]) for k in ("x_train", "x_test"))
    if total > NPZ_MAX_ELEMENTS:
        raise DataFormatError(f"{path}: x_train and x_test declare {total:,} values, more than the "
                              f"{NPZ_MAX_ELEMENTS:,} this app holds in memory: store fewer samples")
    for split in ("train", "test"):
        (xs, _), (ys, yd) = headers[f"x_{split}"], headers[f"y_{split}"]
        if len(xs) not in (2, 3, 4):
            raise DataFormatError(f"{path}: x_{split} has shape {xs}: store (N, D) vectors, (N, C, L) signals or "
                                  f"(N, C, H, W) images")
        if len(ys) != 1:
            raise DataFormatError(f"{path}: y_{split} has shape {ys}: store one label per sample, shape (N,)")
        if xs[0] != ys[0]:
            raise DataFormatError(f"{path}: x_{split} holds {xs[0]} samples but y_{split} {ys[0]} labels: store one "
                                  f"label per sample")
        if xs[0] == 0:
            raise DataFormatError(f"{path}: x_{split} holds no samples: store at least one")
        if yd.kind == "f":
            raise DataFormatError(f"{path}: y_{split} has type {yd}: store labels as integers 0..K-1 "
                                  f"(y.astype(np.int64))")
    if headers["x_train"][0][1:] != headers["x_test"][0][1:]:
        raise DataFormatError(f"{path}: train samples have shape {headers['x_train'][0][1:]} but test samples "
                              f"{headers['x_test'][0][1:]}: store both splits with the same sample shape")
    if "class_names" in headers:
        shape, dtype = headers["class_names"]
        if len(shape) != 1 or dtype.kind != "U" or shape[0] > 100_000:
            raise DataFormatError(f"{path}: class_names has shape {shape} and type {dtype}: store a 1-D array of "
                                  f"strings, np.array(['cat', 'dog', ...])")


def _inputs(path: Path, key: str, x: np.ndarray) -> torch.Tensor:
    if x.ndim == 4 and x.dtype == np.uint8:
        return torch.from_numpy(x.astype(np.float32) / 255.0)
    out = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if not torch.isfinite(out).all():
        raise DataFormatError(f"{path}: {key} holds NaN or infinite values: replace them before saving")
    if x.ndim == 4 and len(out) and (float(out.min()) < 0.0 or float(out.max()) > 1.0):
        raise DataFormatError(f"{path}: {key} images range over [{float(out.min()):g}, {float(out.max()):g}]: "
                              f"scale float images to [0, 1] or store them as uint8")
    return out


def load_npz(root: Path) -> Parts:
    """The four arrays as tensors and the class names (``class_names`` or ``0 .. K - 1``)."""
    headers = _headers(root)
    _check(root, headers)
    try:
        with np.load(root, allow_pickle=False) as z:
            arrays = {k: z[k] for k in (*NPZ_KEYS, *(("class_names",) if "class_names" in headers else ()))}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataFormatError(f"{root} could not be read ({e}): write it again with {_EXAMPLE}") from e
    labels = {k: arrays[k].astype(np.int64) for k in ("y_train", "y_test")}
    low = min(int(v.min()) for v in labels.values())
    high = max(int(v.max()) for v in labels.values())
    names = tuple(str(n) for n in arrays["class_names"]) if "class_names" in arrays else None
    count = len(names) if names is not None else high + 1
    if low < 0 or high >= count:
        fix = f"or list {high + 1} names in class_names" if names is not None else "(K = number of classes)"
        raise DataFormatError(f"{root}: labels range over {low}..{high}, but must be 0..{count - 1}: renumber "
                              f"them 0..K-1 {fix}")
    if count < 2:
        raise DataFormatError(f"{root}: the labels name only one class: store at least two, so that class "
                              f"accuracy means something")
    return (_inputs(root, "x_train", arrays["x_train"]), torch.from_numpy(labels["y_train"]),
            _inputs(root, "x_test", arrays["x_test"]), torch.from_numpy(labels["y_test"]),
            names if names is not None else tuple(str(k) for k in range(count)))
