"""Validated loaders for a run's binary files: ``.npz`` arrays and ``checkpoint.pt``.

Nothing here unpickles. An ``.npz`` is a zip of ``.npy`` members; before any array is
allocated, each member's header (``numpy.lib.format.read_magic`` and
``read_array_header_1_0/2_0``) is read from the zip member and its dtype, element count and
byte size are checked against limits and against the size the member declares, so a 200-byte
file declaring 10^12 floats is refused in microseconds instead of exhausting memory. Arrays are
then read with ``allow_pickle=False``. Checkpoints load with ``torch.load(weights_only=True)``
from a regular file whose unpacked size is bounded, and must hold a state dict of named tensors.

Every failure is a :class:`~hcl_core.runfiles.RunFileError` with one line naming the file
(``name``: how the message calls it, e.g. ``snapshots/epoch_0002.npz``, never a temporary path).
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from .runfiles import RunFileError, clean_message, open_regular

__all__ = [
    "MAX_ARRAY_ELEMENTS",
    "MAX_CHECKPOINT_BYTES",
    "MAX_NPZ_BYTES",
    "MAX_TEXT_CHARS",
    "NPZ_KEYS",
    "check_snapshot",
    "inspect_npz",
    "load_checkpoint",
    "load_npz",
]

#: Most elements of one array (64 Mi: 5000 CIFAR images as float16 are 15 Mi).
MAX_ARRAY_ELEMENTS = 64 * 1024**2
#: Most bytes an ``.npz`` may hold, unpacked.
MAX_NPZ_BYTES = 1024**3
#: Largest checkpoint, packed or unpacked (a ResNet-18 one is ~45 MB).
MAX_CHECKPOINT_BYTES = 1024**3
#: Longest string in a text array (class names).
MAX_TEXT_CHARS = 256
_MAX_MEMBERS = 64
#: Arrays each kind of ``.npz`` of a run holds (what the pages read).
NPZ_KEYS = {"eval_inputs": ("inputs", "labels", "indices"),
            "snapshot": ("features", "labels", "z1", "z2", "z_labels")}
#: dtype kinds allowed: numbers everywhere, text only for class names.
_NUMERIC = "biuf"
_TEXT_KEYS = ("class_names",)
#: What numpy, zipfile and zlib raise for damaged bytes (a header numpy cannot parse raises SyntaxError or
#: tokenize's TokenError; a damaged zip directory struct.error ...): at this boundary all of them mean "corrupt".
_READ_ERRORS = (Exception,)


def _header(member: IO[bytes], name: str, key: str) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise RunFileError(f"{name}: array {key!r} has .npy format version {version}, not 1.0 or 2.0")
    return tuple(int(n) for n in shape), dtype


def inspect_npz(f: IO[bytes], name: str, *, max_elements: int = MAX_ARRAY_ELEMENTS,
                max_bytes: int = MAX_NPZ_BYTES) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{key: (shape, dtype)}`` of every array in the open ``.npz`` ``f``, read from the headers only.

    Refuses (:class:`RunFileError`) members that are not ``.npy``, object or other non-number
    dtypes (text only for ``class_names``), more than ``max_elements`` elements, or data that
    does not fit the member's declared size; and a total beyond ``max_bytes``.
    """
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(f) as zf:
            infos = zf.infolist()
            if len(infos) > _MAX_MEMBERS:
                raise RunFileError(f"{name} holds {len(infos)} arrays, more than {_MAX_MEMBERS}")
            total = 0
            for info in infos:
                key = info.filename.removesuffix(".npy")
                if key == info.filename or not key or "/" in key:
                    raise RunFileError(f"{name} holds {clean_message(info.filename, 60)!r}, not an array")
                total += info.file_size
                if total > max_bytes:
                    raise RunFileError(f"{name} unpacks to more than the limit of {max_bytes:,} bytes")
                with zf.open(info) as member:
                    shape, dtype = _header(member, name, key)
                    header_bytes = member.tell()
                if dtype.hasobject or dtype.kind not in (_NUMERIC + ("U" if key in _TEXT_KEYS else "")):
                    raise RunFileError(f"{name}: array {key!r} has dtype {dtype}, not a number type")
                if dtype.kind == "U" and dtype.itemsize > 4 * MAX_TEXT_CHARS:
                    raise RunFileError(f"{name}: array {key!r} holds strings longer than {MAX_TEXT_CHARS}")
                count = math.prod(shape)
                if count > max_elements:
                    raise RunFileError(f"{name}: array {key!r} declares shape {shape} ({count:,} elements), more "
                                       f"than the limit of {max_elements:,}")
                if header_bytes + count * dtype.itemsize != info.file_size:
                    raise RunFileError(f"{name}: array {key!r} declares shape {shape} of {dtype}, which does not "
                                       f"fit its {info.file_size:,} bytes")
                out[key] = (shape, dtype)
    except RunFileError:
        raise
    except _READ_ERRORS as e:
        raise RunFileError(f"{name} could not be read ({type(e).__name__}: {clean_message(str(e), 200)}); the file "
                           "is corrupt or not an array file written by this program") from None
    return out


def _open_run_file(path: str | os.PathLike, name: str | None, max_bytes: int | None) -> tuple[IO[bytes], str]:
    """The open regular file and the name messages give it (``folder/file`` by default)."""
    path = Path(path)
    name = name or f"{path.parent.name}/{path.name}"
    try:
        return open_regular(path, max_bytes=max_bytes, name=name), name
    except FileNotFoundError:
        raise RunFileError(f"{name} is missing") from None


def load_npz(path: str | os.PathLike, *, name: str | None = None, keys: tuple[str, ...] | None = None,
             max_elements: int = MAX_ARRAY_ELEMENTS, max_bytes: int = MAX_NPZ_BYTES) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (all, or those of ``keys`` it holds), headers checked first
    (:func:`inspect_npz`), never unpickled.

    :class:`RunFileError` if it is missing, not a regular file, corrupt, or breaks a limit.
    """
    f, name = _open_run_file(path, name, max_bytes)
    with f:
        inspect_npz(f, name, max_elements=max_elements, max_bytes=max_bytes)
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as zf:
                out = {}
                for info in zf.infolist():
                    key = info.filename.removesuffix(".npy")
                    if keys is not None and key not in keys:
                        continue
                    with zf.open(info) as member:
                        out[key] = np.lib.format.read_array(member, allow_pickle=False)
                return out
        except _READ_ERRORS as e:
            raise RunFileError(f"{name} could not be read ({type(e).__name__}: {clean_message(str(e), 200)}); the "
                               "file is corrupt") from None


def check_snapshot(arrays: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """``arrays`` if the shapes of a snapshot's arrays fit each other, else :class:`RunFileError`.

    ``features`` ``(n, D)`` with ``labels`` ``(n,)``; ``z1``, ``z2`` ``(m, d)`` with ``z_labels``
    ``(m,)``. Only the arrays present are related (older snapshots may lack some).
    """
    def fail(what: str) -> RunFileError:
        return RunFileError(f"{name}: {what}; the snapshot is damaged")

    f, y, z1, z2, zy = (arrays.get(k) for k in NPZ_KEYS["snapshot"])
    if f is not None and y is not None and (f.ndim != 2 or y.ndim != 1 or len(f) != len(y)):
        raise fail(f"features of shape {f.shape} do not fit labels of shape {y.shape}")
    if z1 is not None and z2 is not None and (z1.ndim != 2 or z1.shape != z2.shape):
        raise fail(f"views z1 {z1.shape} and z2 {z2.shape} differ")
    if z1 is not None and zy is not None and (zy.ndim != 1 or len(zy) != len(z1)):
        raise fail(f"z_labels of shape {zy.shape} do not fit views of shape {z1.shape}")
    return arrays


def _torch_reason(e: BaseException) -> str:
    """The informative line of a torch loading error (its first line advises turning the safe loader off)."""
    lines = [clean_message(s.strip(), 200) for s in str(e).splitlines() if s.strip()]
    useful = [s for s in lines if not s.startswith(("Weights only load failed", "Check the documentation",
                                                     "Please file an issue", "You can use"))]
    return (useful or lines or [type(e).__name__])[0]


def load_checkpoint(path: str | os.PathLike, *, name: str | None = None,
                    max_bytes: int = MAX_CHECKPOINT_BYTES) -> dict[str, Any]:
    """A checkpoint read with ``torch.load(weights_only=True)``: tensors and plain data, never code.

    Raises :class:`RunFileError` when the file is missing, not a regular file, larger than
    ``max_bytes`` packed or unpacked, corrupt, holds anything ``weights_only`` refuses (e.g. a
    pickled object that would run code on load), or is not ``{"model": {name: tensor}, ...}``.
    """
    import pickle

    import torch

    f, name = _open_run_file(path, name, max_bytes)
    with f:
        if zipfile.is_zipfile(f):
            try:
                with zipfile.ZipFile(f) as inner:
                    unpacked = sum(i.file_size for i in inner.infolist())
            except _READ_ERRORS as e:
                raise RunFileError(f"{name} is corrupt ({clean_message(str(e), 200)})") from None
            if unpacked > max_bytes:
                raise RunFileError(f"{name} unpacks to {unpacked:,} bytes, more than the limit of {max_bytes:,}")
        f.seek(0)
        try:
            state = torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise RunFileError(f"{name} was refused by the safe loader (weights_only=True): "
                               f"{_torch_reason(e)}") from None
        except (MemoryError, OverflowError) as e:
            raise RunFileError(f"{name} declares more data than can be loaded ({type(e).__name__}): it is corrupt "
                               "or hostile") from None
        except _READ_ERRORS as e:
            # torch reports a damaged archive as RuntimeError, a truncated one as EOFError/ValueError ...
            raise RunFileError(f"{name} could not be read ({type(e).__name__}: {_torch_reason(e)}): the file is "
                               "corrupt") from None
    if not isinstance(state, dict):
        raise RunFileError(f"{name} holds a {type(state).__name__}, not a checkpoint dict")
    model = state.get("model")
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in model.items()):
        raise RunFileError(f"{name} has no 'model' state dict of named tensors")
    return state
