"""An unpickler that restores plain data and numeric numpy arrays, and nothing else.

A pickle can call any importable function while it loads (``os.system`` included), so a file
from the internet is never given to ``pickle.load``. CIFAR's python batches are pickles, so they
are read through :func:`safe_load`, which refuses every global outside a short allow-list and
rebuilds arrays itself from the file's bytes.

A pickle can also exhaust memory or time without calling anything: a frame, a bytes object or
a memo index declaring 2^60 bytes, lists nested thousands deep, or a few hundred bytes of shared
references that expand to 10^9 objects once walked ("billion laughs"). :func:`check_structure`
runs the pickle's opcodes through a model of the unpickler's stack first (no object is built)
and refuses any of these against :class:`PickleLimits`, in time linear in the file's size.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

__all__ = ["DEFAULT_LIMITS", "PickleLimitError", "PickleLimits", "RestrictedUnpickler", "build_arrays",
           "check_structure", "safe_load"]


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



def safe_load(file: IO[bytes], *, encoding: str = "bytes", limits: PickleLimits | None = None) -> Any:
    """Unpickle ``file`` with :class:`RestrictedUnpickler` and build its arrays.

    The whole file is read (at most ``limits.max_bytes``) and checked by
    :func:`check_structure` before anything is unpickled. ``encoding="bytes"`` keeps Python 2
    ``str`` objects (CIFAR's keys and names) as ``bytes``. Raises ``pickle.UnpicklingError``
    (:class:`PickleLimitError` for a bound) for anything outside the allow-list or the limits,
    and the usual ``EOFError``/``ValueError``/... for a truncated or garbled stream.
    """
    limits = limits or DEFAULT_LIMITS
    data = _read_bounded(file, limits.max_bytes)
    check_structure(data, limits)
    return build_arrays(RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load())


def _read_bounded(file: IO[bytes], max_bytes: int) -> bytes:
    """All of ``file``, refusing more than ``max_bytes`` (checked before reading where the size is known)."""
    try:
        size: int | None = os.fstat(file.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        size = None
    if size is not None and size > max_bytes:
        raise PickleLimitError(f"the file has {size} bytes, more than the {max_bytes} a data file of this kind holds")
    chunks, total = [], 0
    while chunk := file.read(1 << 20):  # in pieces: read(n) may allocate n bytes up front
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise PickleLimitError(f"the file is larger than the {max_bytes} bytes a data file of this kind holds")
    return b"".join(chunks)


class PickleLimitError(pickle.UnpicklingError):
    """A pickle would exceed one of the :class:`PickleLimits` (memory or time), so it was not loaded."""


@dataclass(frozen=True)
class PickleLimits:
    """Bounds on what a data pickle may ask of the unpickler.

    The defaults admit every CIFAR file (the largest, CIFAR-100's ``train``, is 155 MB with
    about 200,000 opcodes, 50,000 memo entries, nesting depth 3 and no shared containers) with
    room to spare, and refuse what only a crafted file does.

    Attributes:
        max_bytes: size of the file.
        max_opcodes: number of opcodes (each builds at most one object).
        max_memo: memo entries, and the largest memo index (the unpickler sizes its memo table
            by the index, so ``LONG_BINPUT 2**31`` alone would allocate 16 GB).
        max_stack: items on the unpickler's stack at once.
        max_depth: nesting of containers (lists in lists ...).
        max_expansion: the object tree, counted with every shared reference expanded as a
            walk over it expands it, may hold this many times the objects the file builds ...
        max_objects: ... and never more than this many.
    """

    max_bytes: int = 1 << 30
    max_opcodes: int = 10_000_000
    max_memo: int = 1 << 22
    max_stack: int = 1 << 20
    max_depth: int = 64
    max_expansion: int = 4
    max_objects: int = 20_000_000


DEFAULT_LIMITS = PickleLimits()

_LEAF = -1  # a stack item that holds no other object (a number, a string, a global)
_EMPTY = frozenset({"EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "EMPTY_TUPLE"})
_FROM_MARK = frozenset({"LIST", "TUPLE", "DICT", "FROZENSET", "INST", "OBJ"})  # pop to the mark, push one
_INTO_FROM_MARK = frozenset({"APPENDS", "SETITEMS", "ADDITEMS"})  # pop to the mark into the item below
_INTO = {"APPEND": 1, "SETITEM": 2, "BUILD": 1}  # pop n into the item below
_BUILD_NEW = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3, "REDUCE": 2, "NEWOBJ": 2, "NEWOBJ_EX": 3, "STACK_GLOBAL": 2}
_REFUSED = frozenset({"PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4"})
_NO_STACK = frozenset({"PROTO", "FRAME", "STOP", "READONLY_BUFFER"})


def check_structure(data: bytes, limits: PickleLimits = DEFAULT_LIMITS) -> None:
    """Refuse a pickle whose loading or walking would exceed ``limits``; build nothing.

    Each opcode is applied to a model of the unpickler's stack whose items are node ids: a
    container is a node with the ids of what it holds, everything else one shared leaf id.
    Memo references push the same node again, so after the scan the nodes form the pickle's
    object graph, and the size of the tree a recursive walk sees (every shared reference
    expanded) follows from one pass over that graph. Raises :class:`PickleLimitError` for a
    bound, ``pickle.UnpicklingError`` for an opcode that needs an extension or persistent ids,
    and ``ValueError`` for a truncated or garbled stream.
    """
    kids: list[list[int]] = []   # per node: the container nodes it holds
    leaves: list[int] = []       # per node: how many leaves it holds
    stack: list[int] = []
    marks: list[int] = []
    memo: dict[int, int] = {}
    pushes = 0

    def node(items: list[int] | tuple[int, ...] = ()) -> int:
        kids.append([i for i in items if i != _LEAF])
        leaves.append(sum(1 for i in items if i == _LEAF))
        return len(kids) - 1

    def pop(n: int) -> list[int]:
        floor = marks[-1] if marks else 0
        if len(stack) - n < floor:
            raise ValueError("the pickle pops more items than it pushed")
        items = stack[len(stack) - n:]
        del stack[len(stack) - n:]
        return items

    def pop_mark() -> list[int]:
        if not marks:
            raise ValueError("the pickle closes a mark it never opened")
        start = marks.pop()
        items = stack[start:]
        del stack[start:]
        return items

    def into(target: int, items: list[int]) -> None:
        if target != _LEAF:
            kids[target].extend(i for i in items if i != _LEAF)
            leaves[target] += sum(1 for i in items if i == _LEAF)

    root = None
    for count, (op, arg, pos) in enumerate(pickletools.genops(data), start=1):
        name = op.name
        if count > limits.max_opcodes:
            raise PickleLimitError(f"the pickle has more than {limits.max_opcodes} opcodes")
        if name in _REFUSED:
            raise pickle.UnpicklingError(f"refusing to load {name}: a data file holds no external references")
        if name == "FRAME":
            remaining = len(data) - (pos or 0) - 9
            if arg > remaining:
                raise PickleLimitError(f"the pickle declares a frame of {arg} bytes at byte {pos}, but only "
                                       f"{max(remaining, 0)} bytes follow")
        elif name == "STOP":
            root = stack[-1] if stack else _LEAF
            break
        elif name in _NO_STACK:
            pass
        elif name == "MARK":
            marks.append(len(stack))
        elif name in _EMPTY:
            stack.append(node())
        elif name.endswith("GET"):
            if arg not in memo:
                raise ValueError(f"the pickle reads memo entry {arg}, which it never stored")
            stack.append(memo[arg])
        elif name.endswith("PUT") or name == "MEMOIZE":
            index = len(memo) if name == "MEMOIZE" else arg
            if index >= limits.max_memo or len(memo) >= limits.max_memo:
                raise PickleLimitError(f"the pickle stores memo entry {index}; at most {limits.max_memo} are "
                                       f"allowed")
            if not stack:
                raise ValueError("the pickle memoizes an empty stack")
            memo[index] = stack[-1]
        elif name == "POP":
            if marks and marks[-1] == len(stack):
                marks.pop()
            else:
                pop(1)
        elif name == "POP_MARK":
            pop_mark()
        elif name == "DUP":
            stack.append(pop(1)[0])
            stack.append(stack[-1])
        elif name in _FROM_MARK:
            stack.append(node(pop_mark()))
        elif name in _INTO_FROM_MARK:
            items = pop_mark()
            if not stack:
                raise ValueError(f"{name} without a target")
            into(stack[-1], items)
        elif name in _INTO:
            items = pop(_INTO[name])
            if not stack:
                raise ValueError(f"{name} without a target")
            into(stack[-1], items)
        elif name in _BUILD_NEW:
            stack.append(node(pop(_BUILD_NEW[name])))
        elif op.stack_before == [] and len(op.stack_after) == 1:
            stack.append(_LEAF)  # numbers, strings, bytes, None, booleans, GLOBAL, NEXT_BUFFER
        else:
            raise pickle.UnpicklingError(f"refusing to load the unknown opcode {name}")
        pushes += 1
        if len(stack) > limits.max_stack:
            raise PickleLimitError(f"the pickle keeps more than {limits.max_stack} items on the stack")
    if root is None:
        raise ValueError("the pickle ends without a STOP opcode")
    _check_tree(root, kids, leaves, limits, budget=max(limits.max_expansion * pushes, 10_000))



def _check_tree(root: int, kids: list[list[int]], leaves: list[int], limits: PickleLimits, budget: int) -> None:
    """Refuse a cycle, nesting deeper than ``limits.max_depth``, or a tree of more than
    ``min(budget, limits.max_objects)`` objects with shared references expanded.

    One iterative post-order pass: ``size[n] = 1 + leaves[n] + sum(size[k] for k in kids[n])``
    over the graph, each node visited once, so a file of a few hundred bytes that expands to
    10^9 objects is measured in microseconds and refused.
    """
    if root == _LEAF:
        return
    bound = min(budget, limits.max_objects)
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    todo: list[tuple[int, bool]] = [(root, False)]
    while todo:
        n, done = todo.pop()
        if done:
            on_path.discard(n)
            size[n] = 1 + leaves[n] + sum(size[k] for k in kids[n])
            depth[n] = 1 + max((depth[k] for k in kids[n]), default=0)
            if depth[n] > limits.max_depth:
                raise PickleLimitError(f"the pickle nests containers more than {limits.max_depth} deep")
            if size[n] > bound:
                raise PickleLimitError(
                    f"the pickle's shared references expand to more than {bound} objects when walked (from "
                    f"{len(kids)} containers in the file): refused as a memory bomb")
            continue
        if n in size:
            continue
        if len(on_path) > limits.max_depth:
            raise PickleLimitError(f"the pickle nests containers more than {limits.max_depth} deep")
        on_path.add(n)
        todo.append((n, True))
        for k in kids[n]:
            if k in on_path:
                raise PickleLimitError("the pickle holds a container that contains itself (a cycle)")
            if k not in size:
                todo.append((k, False))
