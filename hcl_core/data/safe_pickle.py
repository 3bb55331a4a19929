"""An unpickler that restores plain data and numeric numpy arrays, and nothing else.

A pickle can call any importable function while it loads (``os.system`` included), so a file
from the internet is never given to ``pickle.load``. CIFAR's python batches are pickles, so they
are read through :func:`safe_load`, which refuses every global outside a short allow-list and
rebuilds arrays itself from the file's bytes.
"""

from __future__ import annotations

import math
import pickle
from typing import IO, Any

import numpy as np

__all__ = ["RestrictedUnpickler", "build_arrays", "safe_load"]


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of bytes use it, and nothing more (no other codec)."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing to load _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    """``bytes()`` as protocol-2 pickles write an empty bytes object; ``bytes(n)`` would allocate n bytes."""
    if args:
        raise pickle.UnpicklingError("refusing to call bytes() with arguments")
    return b""


def _text(value: Any) -> str:
    return value.decode("latin1") if isinstance(value, bytes | bytearray) else str(value)


def _plain_dtype(code: Any, byte_order: Any = "|") -> np.dtype:
    """A numeric dtype (bool, int, uint, float) from a pickle's type code; anything else refused.

    Object dtypes are the danger: an object array built over bytes from the file holds
    attacker-chosen pointers, which numpy dereferences on first use or when it frees the array.
    """
    try:
        dtype = np.dtype(_text(code))
    except TypeError as e:
        raise pickle.UnpicklingError(f"refusing to load the array type {code!r}: {e}") from None
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise pickle.UnpicklingError(f"refusing to load an array of type {dtype}: only numeric arrays are allowed")
    order = _text(byte_order)
    return dtype.newbyteorder(order) if order in ("<", ">") and dtype.itemsize > 1 else dtype


def _array_from_bytes(raw: Any, dtype: np.dtype, shape: Any, fortran: bool = False) -> np.ndarray:
    """A fresh, writable array copied from ``raw``; its size must match ``shape`` exactly."""
    if isinstance(raw, pickle.PickleBuffer):
        raw = raw.raw()
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise pickle.UnpicklingError(f"refusing to load array data of type {type(raw).__name__}: only raw bytes")
    try:
        shape = tuple(int(n) for n in (shape if isinstance(shape, tuple | list) else (shape,)))
    except (TypeError, ValueError):
        raise pickle.UnpicklingError(f"an array has the invalid shape {shape!r}") from None
    count = math.prod(shape)
    if min(shape, default=0) < 0 or count * dtype.itemsize != len(memoryview(raw).cast("B")):
        raise pickle.UnpicklingError(f"an array of shape {shape} and type {dtype} does not match its "
                                     f"{len(memoryview(raw).cast('B'))} bytes of data")
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C").copy()


class _DtypeSpec:
    """What ``numpy.dtype(code, align, copy)`` plus its ``__setstate__`` in a pickle describe."""

    def __init__(self, code: Any, *_flags: Any):
        self.code, self.byte_order = code, "|"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1:
            self.byte_order = state[1]

    def build(self) -> np.dtype:
        return _plain_dtype(self.code, self.byte_order)


def _dtype_of(spec: Any) -> np.dtype:
    if not isinstance(spec, _DtypeSpec):
        raise pickle.UnpicklingError(f"an array names {type(spec).__name__} as its type, not a dtype")
    return spec.build()


def _refuse_direct_ndarray(*_args: Any) -> None:
    raise pickle.UnpicklingError("refusing to call numpy.ndarray directly: arrays may only be restored from data")


class _ArraySpec:
    """``numpy.core.multiarray._reconstruct(ndarray, ...)`` and the state that fills it."""

    def __init__(self, subtype: Any, *_args: Any):
        if subtype is not _refuse_direct_ndarray:
            raise pickle.UnpicklingError("refusing to restore an array of a type other than numpy.ndarray")
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def build(self) -> np.ndarray:
        state = self.state
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]  # (version, shape, dtype, is_fortran, data)
        if not (isinstance(state, tuple) and len(state) == 4):
            raise pickle.UnpicklingError("an array's state is not (shape, dtype, is_fortran, data)")
        shape, dtype, fortran, raw = state
        return _array_from_bytes(raw, _dtype_of(dtype), shape, bool(fortran))


class _BufferArraySpec:
    """``numpy.core.numeric._frombuffer(buffer, dtype, shape, order)`` (protocol 5 pickles)."""

    def __init__(self, raw: Any, dtype: Any, shape: Any, order: Any = "C"):
        self.raw, self.dtype, self.shape, self.order = raw, dtype, shape, order

    def build(self) -> np.ndarray:
        return _array_from_bytes(self.raw, _dtype_of(self.dtype), self.shape, _text(self.order) == "F")


class _ScalarSpec:
    """``numpy.core.multiarray.scalar(dtype, bytes)``: one numpy number."""

    def __init__(self, dtype: Any, raw: Any = b""):
        self.dtype, self.raw = dtype, raw

    def build(self) -> Any:
        return _array_from_bytes(self.raw, _dtype_of(self.dtype), ())[()]


_SPECS = (_ArraySpec, _BufferArraySpec, _ScalarSpec, _DtypeSpec)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain data and numeric numpy arrays only.

    A pickle can call any importable function while it loads (``os.system`` included), so a
    downloaded file is never given to ``pickle.load``. Nor does this unpickler hand numpy's own
    reconstructors to the file: they would build whatever array it describes, an object array
    over raw bytes included (attacker-chosen pointers, a crash or worse on first use). Instead
    the allowed globals record inert descriptions, and :func:`build_arrays` turns those into
    fresh numeric arrays copied from the file's bytes. ``_codecs.encode`` (how Python 3 writes
    bytes at protocol 2) and an argument-less ``bytes()`` are the only other globals; dicts,
    lists, strings and numbers need none.
    """

    _GLOBALS: dict[tuple[str, str], Any] = {
        **{(m, n): f for m in ("numpy.core.multiarray", "numpy._core.multiarray")
           for n, f in (("_reconstruct", _ArraySpec), ("scalar", _ScalarSpec))},
        ("numpy.core.numeric", "_frombuffer"): _BufferArraySpec,
        ("numpy._core.numeric", "_frombuffer"): _BufferArraySpec,
        ("numpy", "ndarray"): _refuse_direct_ndarray,
        ("numpy", "dtype"): _DtypeSpec,
        ("_codecs", "encode"): _latin1_encode,
        ("__builtin__", "bytes"): _empty_bytes,
        ("builtins", "bytes"): _empty_bytes,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._GLOBALS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a data file may only contain arrays and plain data"
            ) from None


def build_arrays(obj: Any) -> Any:
    """``obj`` with every recorded array description replaced by the real (numeric) array."""
    if isinstance(obj, _SPECS):
        return obj.build()
    if isinstance(obj, dict):
        return {k: build_arrays(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(build_arrays(v) for v in obj)
    return obj



def safe_load(file: IO[bytes], *, encoding: str = "bytes") -> Any:
    """Unpickle ``file`` with :class:`RestrictedUnpickler` and build its arrays.

    ``encoding="bytes"`` keeps Python 2 ``str`` objects (CIFAR's keys and names) as ``bytes``.
    Raises ``pickle.UnpicklingError`` for anything outside the allow-list, and the usual
    ``EOFError``/``ValueError``/... for a truncated or garbled stream.
    """
    return build_arrays(RestrictedUnpickler(file, encoding=encoding).load())
