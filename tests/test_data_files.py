"""The file-based loaders: MNIST IDX files, CIFAR pickles and a folder of images.

Every loader is tested on tiny files written here in the real on-disk formats and read back
through ``load_dataset`` itself.
"""

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hcl_core.data import DataFormatError, DataNotFoundError, load_dataset
from hcl_core.data.idx import MNIST_FILES

CIFAR10_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship",
                 b"truck"]


# --------------------------------------------------------------------------------------------
# Writers of the real formats
# --------------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """IDX: 0x0000 0x08 (unsigned byte) ndim, big-endian uint32 dims, then the bytes."""
    header = bytes((0, 0, 0x08, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path


def make_mnist(folder: Path, n_train: int = 20, n_test: int = 10, gz: bool = False) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        MNIST_FILES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        MNIST_FILES[1]: (np.arange(n_train) % 10).astype(np.uint8),
        MNIST_FILES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        MNIST_FILES[3]: ((np.arange(n_test) * 3) % 10).astype(np.uint8),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array, gz=gz)
    return arrays


def dump(path: Path, obj, protocol: int) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def cifar_batch(rng, n: int, label_key: bytes, num_classes: int) -> dict:
    """A batch dict shaped like the real files (bytes keys: they were written by Python 2)."""
    return {
        b"batch_label": b"training batch 1 of 5",
        label_key: [int(v) for v in rng.integers(0, num_classes, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def make_cifar10(root: Path, n: int = 4, protocol: int = 2) -> list[dict]:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = [cifar_batch(rng, n, b"labels", 10) for _ in range(6)]
    for i, batch in enumerate(batches[:5], start=1):
        dump(d / f"data_batch_{i}", batch, protocol)
    dump(d / "test_batch", batches[5], protocol)
    dump(d / "batches.meta", {b"num_cases_per_batch": n, b"label_names": CIFAR10_NAMES, b"num_vis": 3072},
         protocol)
    return batches


def make_cifar100(root: Path, n: int = 6, protocol: int = 2) -> list[dict]:
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    rng = np.random.default_rng(2)
    batches = []
    for name in ("train", "test"):
        batch = cifar_batch(rng, n, b"fine_labels", 100)
        batch[b"coarse_labels"] = [v // 5 for v in batch[b"fine_labels"]]
        dump(d / name, batch, protocol)
        batches.append(batch)
    dump(d / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                      b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}, protocol)
    return batches


def make_image_folder(root: Path, colours: dict[str, tuple], n: int, mode: str = "RGB",
                      size: tuple[int, int] = (20, 12)) -> None:
    for cls, colour in colours.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new(mode, size, colour).save(root / cls / f"{i:03d}.png")


class _Evil:
    """Unpickling this runs ``function(argument)``: what a malicious data file would do."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


# --------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX)
# --------------------------------------------------------------------------------------------


def test_mnist_raw_files_load_from_torchvisions_layout(tmp_path):
    arrays = make_mnist(tmp_path / "MNIST" / "raw")
    ds = load_dataset("mnist", tmp_path)
    assert ds.train_x.shape == (20, 1, 28, 28) and ds.test_x.shape == (10, 1, 28, 28)
    assert ds.train_x.dtype == torch.float32 and ds.test_y.dtype == torch.int64
    assert torch.equal(ds.train_x[:, 0], torch.from_numpy(arrays[MNIST_FILES[0]]).float() / 255)
    assert ds.train_y.tolist() == arrays[MNIST_FILES[1]].tolist()
    assert ds.test_y.tolist() == arrays[MNIST_FILES[3]].tolist()
    assert ds.classes == tuple("0123456789") and ds.is_image
    assert load_dataset("mnist", str(tmp_path)) is ds, "str and Path roots share the cache"


def test_fashion_mnist_loads_gz_files_and_files_directly_in_root(tmp_path):
    arrays = make_mnist(tmp_path / "a" / "FashionMNIST" / "raw", gz=True)
    ds = load_dataset("fashion_mnist", tmp_path / "a")
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert torch.equal(ds.test_x[:, 0], torch.from_numpy(arrays[MNIST_FILES[2]]).float() / 255)
    make_mnist(tmp_path / "b", n_train=10, n_test=5)
    flat = load_dataset("fashion_mnist", tmp_path / "b")
    assert flat.train_x.shape == (10, 1, 28, 28) and flat.test_y.shape == (5,)


def test_replaced_files_are_reloaded(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    make_mnist(folder)
    first = load_dataset("mnist", tmp_path)
    labels = np.full(20, 7, dtype=np.uint8)
    path = write_idx(folder / MNIST_FILES[1], labels)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = load_dataset("mnist", tmp_path)
    assert second is not first and second.train_y.tolist() == [7] * 20


def test_corrupt_idx_files_give_clear_errors(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    make_mnist(folder)
    (folder / MNIST_FILES[0]).write_bytes(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(DataFormatError, match="magic number is 0x12345678") as e:
        load_dataset("mnist", tmp_path)
    assert MNIST_FILES[0] in str(e.value)

    make_mnist(folder)
    raw = (folder / MNIST_FILES[2]).read_bytes()
    (folder / MNIST_FILES[2]).write_bytes(raw[:-50])
    with pytest.raises(DataFormatError, match="truncated"):
        load_dataset("mnist", tmp_path)

    make_mnist(folder)
    write_idx(folder / MNIST_FILES[3], np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataFormatError, match="do not belong together"):
        load_dataset("mnist", tmp_path)

    make_mnist(folder)
    (folder / MNIST_FILES[1]).unlink()
    (folder / (MNIST_FILES[1] + ".gz")).write_bytes(b"\x1f\x8b" + b"not really gzip")
    with pytest.raises(DataFormatError, match="gzip"):
        load_dataset("mnist", tmp_path)

# --------------------------------------------------------------------------------------------
# CIFAR (pickles)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
def test_cifar10_batches_load_as_rgb_planes_with_their_labels(tmp_path, protocol):
    batches = make_cifar10(tmp_path, n=4, protocol=protocol)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)
    assert ds.train_x.dtype == torch.float32 and 0.0 <= float(ds.train_x.min()) <= float(ds.train_x.max()) <= 1.0
    assert ds.classes == tuple(n.decode() for n in CIFAR10_NAMES)
    assert ds.train_y.tolist() == [v for b in batches[:5] for v in b[b"labels"]]
    assert ds.test_y.tolist() == batches[5][b"labels"]
    # A row is the red, green and blue 32x32 planes, each row-major.
    row = batches[0][b"data"][1]
    assert float(ds.train_x[1, 1, 2, 3]) == pytest.approx(row[1024 + 2 * 32 + 3] / 255)
    assert float(ds.train_x[1, 2, 31, 0]) == pytest.approx(row[2048 + 31 * 32] / 255)


def test_cifar100_uses_the_fine_labels_and_their_names(tmp_path):
    train, test = make_cifar100(tmp_path, n=6)
    ds = load_dataset("cifar100", tmp_path)
    assert ds.train_x.shape == (6, 3, 32, 32) and ds.num_classes == 100
    assert ds.train_y.tolist() == train[b"fine_labels"] and ds.test_y.tolist() == test[b"fine_labels"]
    assert ds.classes[:2] == ("fine0", "fine1")


@pytest.mark.parametrize("function", [os.system, eval])
def test_a_malicious_cifar_batch_is_refused_without_running_anything(tmp_path, function):
    marker = tmp_path / "pwned"
    argument = f"touch {marker}" if function is os.system else f"open({str(marker)!r}, 'w')"
    make_cifar10(tmp_path)
    dump(tmp_path / "cifar-10-batches-py" / "data_batch_3", {b"data": _Evil(function, argument)}, 2)
    with pytest.raises(DataFormatError, match="refusing to load") as e:
        load_dataset("cifar10", tmp_path)
    assert isinstance(e.value.__cause__, pickle.UnpicklingError)
    assert "data_batch_3" in str(e.value)
    assert not marker.exists()


def test_cifar_files_with_the_wrong_content_are_refused(tmp_path):
    make_cifar10(tmp_path)
    d = tmp_path / "cifar-10-batches-py"
    dump(d / "data_batch_2", {b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, 2)
    with pytest.raises(DataFormatError, match=r"\(n, 3072\)"):
        load_dataset("cifar10", tmp_path)
    dump(d / "data_batch_2", {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 12]}, 2)
    with pytest.raises(DataFormatError, match="outside"):
        load_dataset("cifar10", tmp_path)
    (d / "data_batch_2").write_bytes(b"\x80\x02}q\x00")  # a pickle cut off in the middle
    with pytest.raises(DataFormatError, match="not a valid pickle"):
        load_dataset("cifar10", tmp_path)

# --------------------------------------------------------------------------------------------
# CIFAR (binary release: plain bytes)
# --------------------------------------------------------------------------------------------


def make_cifar10_binary(root: Path, n: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """cifar-10-batches-bin: records of 1 label byte + 3,072 pixel bytes; batches.meta.txt names the classes."""
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    rng = np.random.default_rng(3)
    batches = []
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, n).astype(np.uint8)
        pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        (d / name).write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())
        batches.append((labels, pixels))
    (d / "batches.meta.txt").write_text("\n".join(n.decode() for n in CIFAR10_NAMES) + "\n\n")
    return batches


def test_cifar10_binary_records_load_as_rgb_planes_and_are_preferred_over_the_pickles(tmp_path):
    batches = make_cifar10_binary(tmp_path)
    make_cifar10(tmp_path)  # both releases present: the binary one (no unpickling at all) is read
    ds = load_dataset("cifar10", tmp_path)
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)
    assert ds.train_y.tolist() == [int(v) for labels, _ in batches[:5] for v in labels]
    assert ds.test_y.tolist() == batches[5][0].tolist()
    pixels = batches[0][1][1]
    assert float(ds.train_x[1, 1, 2, 3]) == pytest.approx(pixels[1024 + 2 * 32 + 3] / 255)
    assert float(ds.train_x[1, 2, 31, 0]) == pytest.approx(pixels[2048 + 31 * 32] / 255)
    assert ds.classes == tuple(n.decode() for n in CIFAR10_NAMES)


def test_cifar100_binary_records_use_the_second_label_byte_the_fine_label(tmp_path):
    d = tmp_path / "cifar-100-binary"
    d.mkdir()
    rng = np.random.default_rng(4)
    fine = {name: rng.integers(0, 100, 5).astype(np.uint8) for name in ("train.bin", "test.bin")}
    for name, labels in fine.items():
        records = np.concatenate([(labels // 5)[:, None], labels[:, None], rng.integers(0, 256, (5, 3072),
                                                                                         dtype=np.uint8)], axis=1)
        (d / name).write_bytes(records.tobytes())
    (d / "fine_label_names.txt").write_text("".join(f"fine{i}\n" for i in range(100)))
    ds = load_dataset("cifar100", tmp_path)
    assert ds.train_y.tolist() == fine["train.bin"].tolist() and ds.test_y.tolist() == fine["test.bin"].tolist()
    assert ds.classes[99] == "fine99" and ds.train_x.shape == (5, 3, 32, 32)


def test_damaged_cifar_binary_files_are_refused_in_one_line(tmp_path):
    make_cifar10_binary(tmp_path)
    d = tmp_path / "cifar-10-batches-bin"
    (d / "data_batch_3.bin").write_bytes(bytes(3073 * 2 + 7))
    with pytest.raises(DataFormatError, match="not a whole number of 3073-byte CIFAR records"):
        load_dataset("cifar10", tmp_path)
    (d / "data_batch_3.bin").write_bytes(bytes([11]) + bytes(3072))
    with pytest.raises(DataFormatError, match="label 11, outside 0..9"):
        load_dataset("cifar10", tmp_path)
    (d / "data_batch_3.bin").write_bytes(bytes(3073 * 10_001))
    with pytest.raises(DataFormatError, match="10001 records, but the release's file holds at most 10000"):
        load_dataset("cifar10", tmp_path)
    (d / "data_batch_3.bin").write_bytes(bytes(3073))
    (d / "batches.meta.txt").write_text("cat\ndog\n")
    with pytest.raises(DataFormatError, match="names 2 classes, but the data set has 10"):
        load_dataset("cifar10", tmp_path)


# --------------------------------------------------------------------------------------------
# image_folder
# --------------------------------------------------------------------------------------------


def test_an_rgb_image_folder_is_split_80_20_and_keeps_its_colours(tmp_path):
    make_image_folder(tmp_path, {"cat": (255, 0, 0), "dog": (0, 0, 255)}, n=5)
    ds = load_dataset("image_folder", tmp_path, image_size=16)
    assert ds.classes == ("cat", "dog") and ds.is_image
    assert ds.train_x.shape == (8, 3, 16, 16) and ds.test_x.shape == (2, 3, 16, 16)
    assert torch.bincount(ds.test_y).tolist() == [1, 1], "stratified 80/20 split"
    for x, y in zip(torch.cat([ds.train_x, ds.test_x]), torch.cat([ds.train_y, ds.test_y]), strict=True):
        colour = x.mean(dim=(1, 2))
        assert torch.allclose(colour, torch.tensor([1.0, 0.0, 0.0] if y == 0 else [0.0, 0.0, 1.0]))
    again = load_dataset("image_folder", tmp_path, image_size=8)
    assert again.train_x.shape == (8, 3, 8, 8) and torch.equal(again.test_y, ds.test_y)


def test_a_grayscale_image_folder_with_train_and_test_folders_loads_as_one_channel(tmp_path):
    make_image_folder(tmp_path / "train", {"a": 10, "b": 200}, n=3, mode="L")
    make_image_folder(tmp_path / "test", {"a": 10, "b": 200}, n=2, mode="L")
    ds = load_dataset("image_folder", tmp_path, image_size=12)
    assert ds.train_x.shape == (6, 1, 12, 12) and ds.test_x.shape == (4, 1, 12, 12)
    assert ds.test_y.tolist() == [0, 0, 1, 1]
    assert float(ds.test_x[3].mean()) == pytest.approx(200 / 255, abs=1e-6)


def test_image_folder_problems_each_name_the_file_or_folder(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_dataset("image_folder", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="one subfolder per class"):
        load_dataset("image_folder", tmp_path / "empty")
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.new("RGB", (8, 8)).save(loose / "x.png")
    with pytest.raises(DataNotFoundError, match="No class folders"):
        load_dataset("image_folder", loose)
    make_image_folder(tmp_path / "one", {"only": (1, 2, 3)}, n=4)
    with pytest.raises(DataNotFoundError, match="at least two"):
        load_dataset("image_folder", tmp_path / "one")
    make_image_folder(tmp_path / "bad", {"a": (1, 2, 3), "b": (4, 5, 6)}, n=3)
    (tmp_path / "bad" / "b" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataFormatError, match="broken.png"):
        load_dataset("image_folder", tmp_path / "bad")


def test_a_cifar10_meta_file_with_another_number_of_classes_is_refused(tmp_path):
    make_cifar10(tmp_path)
    names = [*CIFAR10_NAMES, b"unicorn"]
    dump(tmp_path / "cifar-10-batches-py" / "batches.meta", {b"label_names": names}, 2)
    with pytest.raises(DataFormatError, match="cifar10 has 10 classes, but its files name 11"):
        load_dataset("cifar10", tmp_path)
