"""The allow-list unpickler: plain data and numeric arrays come back exactly; nothing else runs.

Each hostile file is a real pickle written by ``pickle.dump`` at several protocols; a marker file
that the payload would create proves that nothing ran.
"""

import codecs
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from hcl_core.data.safe_pickle import RestrictedUnpickler, safe_load


class _Evil:
    """Unpickling this runs ``function(argument)``: what a malicious data file would do."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


class _Reduces:
    """Unpickling this calls ``function(*args)``: a global the allow-list must judge by its arguments."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def dump(path: Path, obj, protocol: int) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def load(path: Path):
    with open(path, "rb") as f:
        return safe_load(f)


@pytest.mark.parametrize("protocol", [0, 2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("function", [os.system, eval, exec])
def test_a_pickle_that_calls_a_function_is_refused_before_anything_runs(tmp_path, function, protocol):
    marker = tmp_path / "pwned"
    argument = f"touch {marker}" if function is os.system else f"open({str(marker)!r}, 'w')"
    path = dump(tmp_path / "evil", {b"data": [1, 2, _Evil(function, argument)]}, protocol)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        load(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_numeric_arrays_and_scalars_are_restored_exactly_and_writable(tmp_path, protocol):
    rng = np.random.default_rng(0)
    payload = {
        b"u8": rng.integers(0, 256, (3, 5), dtype=np.uint8),
        b"f64_big_endian": rng.normal(size=7).astype(">f8"),
        b"i32_fortran": np.asfortranarray(rng.integers(-9, 9, (4, 3)).astype(np.int32)),
        b"bool": np.array([True, False, True]),
        b"empty": np.zeros((0, 3072), np.uint8),
        b"scalars": [np.int64(7), np.float32(0.5)],
    }
    got = load(dump(tmp_path / "p", payload, protocol))
    for key, want in payload.items():
        if key == b"scalars":
            assert got[key] == want and [type(v) for v in got[key]] == [np.int64, np.float32]
            continue
        assert got[key].dtype == want.dtype and got[key].shape == want.shape, key
        np.testing.assert_array_equal(got[key], want)
        assert got[key].flags.writeable


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_plain_data_round_trips_with_bytes_kept_as_bytes(tmp_path, protocol):
    payload = {b"name": b"batch 1", "text": "caf\u00e9", "nested": [(1, 2.5), {b"k": None}], "empty": b"",
               "flags": [True, False]}
    assert load(dump(tmp_path / "p", payload, protocol)) == payload


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("array", [np.array([1, "a", None], dtype=object),
                                   np.zeros(2, dtype=[("x", "u1"), ("y", "f4")]),
                                   np.array(["ab", "cd"])],
                         ids=["object", "structured", "unicode"])
def test_non_numeric_arrays_are_refused(tmp_path, protocol, array):
    with pytest.raises(pickle.UnpicklingError, match="refusing|only raw bytes"):
        load(dump(tmp_path / "p", {b"labels": array}, protocol))


def test_an_object_array_built_by_calling_ndarray_over_raw_bytes_is_refused(tmp_path):
    # What numpy would do with these arguments: an object array whose pointers are the file's bytes.
    path = dump(tmp_path / "p", _Reduces(np.ndarray, (1,), np.dtype("O"), b"AAAAAAAA"), 2)
    with pytest.raises(pickle.UnpicklingError, match="numpy.ndarray directly"):
        load(path)


def test_an_array_whose_shape_does_not_match_its_bytes_is_refused():
    # A real protocol-2 array of 1000 bytes whose declared shape is edited to 1001 (BININT2 0x03e9).
    good = pickle.dumps(np.zeros(1000, np.uint8), protocol=2)
    assert good.count(b"M\xe8\x03") == 1
    with pytest.raises(pickle.UnpicklingError, match="does not match"):
        safe_load(io.BytesIO(good.replace(b"M\xe8\x03", b"M\xe9\x03")))
    assert safe_load(io.BytesIO(good)).shape == (1000,)


def test_bytes_with_an_argument_and_codecs_other_than_latin1_are_refused(tmp_path):
    with pytest.raises(pickle.UnpicklingError, match="bytes"):
        load(dump(tmp_path / "a", _Reduces(bytes, 10**9), 2))
    with pytest.raises(pickle.UnpicklingError, match="encoding"):
        load(dump(tmp_path / "b", _Reduces(codecs.encode, "x", "rot13"), 2))


def test_the_unpickler_itself_refuses_a_global_outside_the_allow_list():
    stream = io.BytesIO(pickle.dumps(_Evil(print, "hi"), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load (__builtin__|builtins)\.print"):
        RestrictedUnpickler(stream, encoding="bytes").load()
