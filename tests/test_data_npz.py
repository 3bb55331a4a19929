"""Your own arrays from one .npz file: real files written with numpy, each bad one refused in one line."""

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hcl_core.data import DataFormatError, DataNotFoundError, clear_cache, load_dataset
from hcl_core.data.npz import NPZ_MAX_ELEMENTS

PROJECT = Path(__file__).resolve().parents[1]


def arrays(shape=(5,), n_train=12, n_test=6, classes=3, dtype=np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x_train": rng.random((n_train, *shape)).astype(dtype), "y_train": np.arange(n_train) % classes,
            "x_test": rng.random((n_test, *shape)).astype(dtype), "y_test": np.arange(n_test) % classes}


def save(tmp_path: Path, name: str = "data.npz", compressed: bool = False, **content) -> Path:
    path = tmp_path / name
    (np.savez_compressed if compressed else np.savez)(path, **content)
    return path


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_cache()
    yield
    clear_cache()


@pytest.mark.parametrize(("shape", "augmentation", "is_image"), [((5,), "vector", False),
                                                                 ((2, 9), "signal", False),
                                                                 ((1, 6, 6), "image", True)])
def test_vectors_signals_and_images_load_with_the_right_augmentation(tmp_path, shape, augmentation, is_image):
    content = arrays(shape)
    ds = load_dataset("npz", save(tmp_path, compressed=True, **content))
    assert ds.train_x.shape == (12, *shape) and ds.train_x.dtype == torch.float32
    assert ds.augmentation == augmentation and ds.is_image == is_image
    assert torch.equal(ds.train_x, torch.from_numpy(content["x_train"]))
    assert ds.test_y.tolist() == content["y_test"].tolist() and ds.classes == ("0", "1", "2")


def test_uint8_images_are_scaled_and_class_names_are_used(tmp_path):
    content = arrays((3, 4, 4), dtype=np.float64)
    content["x_train"] = (content["x_train"] * 255).astype(np.uint8)
    content["x_test"] = (content["x_test"] * 255).astype(np.uint8)
    path = save(tmp_path, class_names=np.array(["cat", "dog", "eel", "fox"]), **content)
    ds = load_dataset("npz", path)
    assert ds.classes == ("cat", "dog", "eel", "fox") and ds.is_image
    assert float(ds.train_x.max()) <= 1.0 and torch.equal(ds.train_x, torch.from_numpy(content["x_train"]) / 255.0)


def _bad(tmp_path: Path, **changes) -> Path:
    content = arrays()
    for key, value in changes.items():
        if value is None:
            del content[key]
        else:
            content[key] = value
    return save(tmp_path, **content)


BAD_FILES = {
    "a key is missing": ({"y_test": None}, "lacks y_test"),
    "an object array": ({"y_train": np.array([0, 1, None] * 4, dtype=object)}, "y_train has type object"),
    "float labels": ({"y_train": np.arange(12) % 3 + 0.0}, "y_train has type float64"),
    "string inputs": ({"x_test": np.array(["a"] * 6)}, "x_test has type <U1"),
    "labels outside 0..K-1": ({"y_test": np.array([0, 1, 2, 3, 4, -1])}, "labels range over -1..4"),
    "fewer labels than samples": ({"y_train": np.arange(11) % 3}, "x_train holds 12 samples but y_train 11"),
    "2-D labels": ({"y_train": np.zeros((12, 1), np.int64)}, "y_train has shape"),
    "1-D inputs": ({"x_train": np.zeros(12, np.float32)}, "x_train has shape"),
    "train and test shapes differ": ({"x_test": np.zeros((6, 4), np.float32)}, "train samples have shape"),
    "NaN inputs": ({"x_test": np.full((6, 5), np.nan, np.float32)}, "x_test holds NaN"),
    "float images outside [0, 1]": ({"x_train": np.full((12, 1, 2, 2), 3.0, np.float32),
                                     "x_test": np.zeros((6, 1, 2, 2), np.float32)}, "scale float images"),
    "one class only": ({"y_train": np.zeros(12, np.int64), "y_test": np.zeros(6, np.int64)}, "only one class"),
    "no samples": ({"x_test": np.zeros((0, 5), np.float32), "y_test": np.zeros(0, np.int64)}, "holds no samples"),
    "too few class names": ({"class_names": np.array(["a", "b"])}, "list 3 names in class_names"),
    "numeric class names": ({"class_names": np.arange(3)}, "class_names has shape"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_each_bad_file_is_refused_in_one_line_naming_the_key_and_the_fix(tmp_path, case):
    changes, expected = BAD_FILES[case]
    path = _bad(tmp_path, **changes)
    with pytest.raises(DataFormatError) as e:
        load_dataset("npz", path)
    message = str(e.value)
    assert expected in message and "\n" not in message and str(path) in message
    assert any(word in message for word in ("store", "save", "renumber", "replace", "scale", "write")), message


def test_a_file_that_is_not_a_zip_or_whose_member_is_cut_short_is_refused(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not an npz file at all")
    with pytest.raises(DataFormatError, match="not a readable .npz file"):
        load_dataset("npz", garbage)
    # A real x_train.npy member whose data stops after its header.
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((12, 5), np.float32))
    cut = tmp_path / "cut.npz"
    np.savez(cut, **{k: v for k, v in arrays().items() if k != "x_train"})
    with zipfile.ZipFile(cut, "a") as z:
        z.writestr("x_train.npy", buffer.getvalue()[:200])
    with pytest.raises(DataFormatError, match="could not be read") as e:
        load_dataset("npz", cut)
    assert "\n" not in str(e.value)


def test_a_header_that_declares_a_huge_array_is_refused_before_anything_is_allocated(tmp_path):
    # The header of an .npy claiming 10^12 values, followed by 40 bytes: loading it would try to
    # allocate 4 TB. The check reads the header alone.
    buffer = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**11, 10)}
    np.lib.format.write_array_header_1_0(buffer, header)
    buffer.write(bytes(40))
    path = tmp_path / "huge.npz"
    np.savez(path, **{k: v for k, v in arrays().items() if k != "x_train"})
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("x_train.npy", buffer.getvalue())
    with pytest.raises(DataFormatError, match=f"more than the {NPZ_MAX_ELEMENTS:,}"):
        load_dataset("npz", path)


def test_a_missing_file_or_a_folder_says_to_pass_one_npz_file(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist: pass the path of one .npz file"):
        load_dataset("npz", tmp_path / "nope.npz")
    with pytest.raises(DataNotFoundError, match="is a folder"):
        load_dataset("npz", tmp_path)
    with pytest.raises(ValueError, match="pass root"):
        load_dataset("npz")


def test_a_replaced_file_is_read_again(tmp_path):
    path = save(tmp_path, **arrays())
    first = load_dataset("npz", path)
    content = arrays(classes=2)
    np.savez(path, **content)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = load_dataset("npz", path)
    assert second is not first and second.num_classes == 2


def test_the_command_line_prints_one_line_and_exits_2_for_a_bad_file(tmp_path):
    path = _bad(tmp_path, y_test=None)
    proc = subprocess.run([sys.executable, "-m", "hcl_core", "train", "--dataset", "npz", "--data-root", str(path),
                           "--epochs", "1", "--out", str(tmp_path / "runs")],
                          capture_output=True, text=True, cwd=PROJECT, timeout=300)
    assert proc.returncode == 2, proc.stderr[-800:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "lacks y_test" in lines[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()), "no run folder left behind"
