"""Data sets and augmentation.

Every file-based loader is tested on tiny files written here in the real on-disk formats (IDX,
CIFAR's python pickles, a folder of PNGs) and read back through ``load_dataset`` itself.
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

from hcl_core import data
from hcl_core.data import (
    DATASETS,
    DataFormatError,
    DataNotFoundError,
    Dataset,
    augment,
    load_dataset,
    two_views,
)

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
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
# Registry, errors, caching
# --------------------------------------------------------------------------------------------


def test_registry_lists_exactly_the_supported_data_sets():
    assert set(DATASETS) == {"digits", "synthetic", "mnist", "fashion_mnist", "cifar10", "cifar100",
                             "image_folder"}
    assert not DATASETS["digits"].needs_root and not DATASETS["synthetic"].is_image
    assert all(DATASETS[n].needs_root for n in ("mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder"))
    assert "streamlit" not in Path(data.__file__).read_text()


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown data set 'imagenet'") as e:
        load_dataset("imagenet")
    assert all(name in str(e.value) for name in DATASETS)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder"])
def test_file_based_sets_need_a_root(name):
    with pytest.raises(ValueError, match="pass root"):
        load_dataset(name)


@pytest.mark.parametrize("kwargs", [{"max_train": 0}, {"max_test": -3}, {"max_train": 2.5},
                                    {"synthetic_overlap": 1.5}, {"image_size": 2}])
def test_bad_parameters_are_refused(kwargs):
    name = "synthetic" if "synthetic_overlap" in kwargs else "digits"
    with pytest.raises(ValueError):
        load_dataset(name, **kwargs)


@pytest.mark.parametrize(("name", "expected"), [
    ("mnist", [*MNIST_FILES, os.path.join("MNIST", "raw")]),
    ("fashion_mnist", [*MNIST_FILES, os.path.join("FashionMNIST", "raw")]),
    ("cifar10", ["data_batch_1", "data_batch_5", "test_batch", "batches.meta", "cifar-10-batches-py"]),
    ("cifar100", ["train", "test", "meta", "cifar-100-python"]),
])
def test_missing_files_say_what_to_put_where(tmp_path, name, expected):
    with pytest.raises(DataNotFoundError) as e:
        load_dataset(name, tmp_path)
    message = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    assert str(tmp_path) in message and "network" in message
    for part in expected:
        assert part in message, part
    assert message.count(". ") == 0, "one sentence"


def test_a_root_that_does_not_exist_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_dataset("mnist", missing)


def test_dataset_checks_its_tensors():
    x, y = torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.int64)
    ds = Dataset("t", x, y, x, y, ("a", "b"), True)
    assert ds.num_classes == 2 and ds.input_shape == (1, 8, 8)
    with pytest.raises(ValueError, match="int64"):
        Dataset("t", x, y.int(), x, y, ("a",), True)
    with pytest.raises(ValueError, match="labels must lie"):
        Dataset("t", x, y + 5, x, y, ("a", "b"), True)
    with pytest.raises(ValueError, match="4 dims"):
        Dataset("t", x.flatten(1), y, x.flatten(1), y, ("a",), True)


# --------------------------------------------------------------------------------------------
# digits and synthetic
# --------------------------------------------------------------------------------------------


def test_digits_fixed_stratified_split():
    ds = load_dataset("digits")
    assert ds.is_image and ds.classes == tuple("0123456789")
    assert ds.train_x.shape == (1437, 1, 8, 8) and ds.test_x.shape == (360, 1, 8, 8)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    assert float(ds.train_x.min()) >= 0.0 and float(ds.train_x.max()) == 1.0
    train_counts, test_counts = torch.bincount(ds.train_y), torch.bincount(ds.test_y)
    share = test_counts.float() / (train_counts + test_counts).float()
    assert torch.all((share - 0.2).abs() < 0.01), "stratified: 20 % of every class is held out"
    # The split never depends on a run's seed: reseed everything, drop the cache, reload.
    first_test_y = ds.test_y.clone()
    torch.manual_seed(99)
    np.random.seed(99)
    data.clear_cache()
    again = load_dataset("digits")
    assert again is not ds and torch.equal(again.test_y, first_test_y) and torch.equal(again.train_x, ds.train_x)
    # Pinned, so a change of split (which would make old runs incomparable) fails loudly.
    assert ds.test_y[:12].tolist() == [1, 4, 8, 6, 5, 9, 9, 1, 3, 2, 2, 2]


def test_loads_are_cached_and_subsets_are_stratified_and_deterministic():
    assert load_dataset("digits") is load_dataset("digits")
    sub = load_dataset("digits", max_train=500, max_test=100)
    assert sub.train_x.shape == (500, 1, 8, 8) and sub.test_x.shape == (100, 1, 8, 8)
    assert torch.bincount(sub.test_y).tolist() == [10] * 10
    assert (torch.bincount(sub.train_y, minlength=10) - 50).abs().max() <= 2
    data.clear_cache()
    again = load_dataset("digits", max_train=500, max_test=100)
    assert torch.equal(again.train_y, sub.train_y) and torch.equal(again.test_x, sub.test_x)
    assert len(load_dataset("digits", max_train=10**6).train_y) == 1437


def nearest_mean_accuracy(ds: Dataset) -> float:
    means = torch.stack([ds.train_x[ds.train_y == k].mean(0) for k in range(ds.num_classes)])
    return float(((ds.test_x @ means.T).argmax(1) == ds.test_y).float().mean())


def test_synthetic_shapes_and_overlap_controls_separability():
    ds = load_dataset("synthetic")
    assert not ds.is_image and ds.input_shape == (32,) and ds.num_classes == 10
    assert ds.train_x.shape == (2000, 32) and ds.test_x.shape == (500, 32)
    assert torch.allclose(ds.train_x.norm(dim=1), torch.ones(2000), atol=1e-5)
    assert torch.bincount(ds.train_y).tolist() == [200] * 10 and torch.bincount(ds.test_y).tolist() == [50] * 10
    accuracy = [nearest_mean_accuracy(load_dataset("synthetic", synthetic_overlap=o)) for o in (0.0, 0.5, 1.0)]
    assert accuracy[0] > 0.99 and accuracy[0] > accuracy[1] + 0.1 > accuracy[2] + 0.2
    assert accuracy[2] > 0.15, "still above chance (0.1) at full overlap"
    assert torch.equal(load_dataset("synthetic", "/ignored/root").train_y, ds.train_y)


# --------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX)
# --------------------------------------------------------------------------------------------


def test_mnist_raw_files_in_torchvision_layout(tmp_path):
    arrays = make_mnist(tmp_path / "MNIST" / "raw")
    ds = load_dataset("mnist", tmp_path)
    assert ds.train_x.shape == (20, 1, 28, 28) and ds.test_x.shape == (10, 1, 28, 28)
    assert ds.train_x.dtype == torch.float32 and ds.test_y.dtype == torch.int64
    assert torch.equal(ds.train_x[:, 0], torch.from_numpy(arrays[MNIST_FILES[0]]).float() / 255)
    assert ds.train_y.tolist() == arrays[MNIST_FILES[1]].tolist()
    assert ds.test_y.tolist() == arrays[MNIST_FILES[3]].tolist()
    assert ds.classes == tuple("0123456789") and ds.is_image
    assert load_dataset("mnist", str(tmp_path)) is ds, "str and Path roots share the cache"


def test_fashion_mnist_gz_files_and_files_directly_in_root(tmp_path):
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
def test_cifar10_batches(tmp_path, protocol):
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


def test_cifar100_uses_fine_labels(tmp_path):
    train, test = make_cifar100(tmp_path, n=6)
    ds = load_dataset("cifar100", tmp_path)
    assert ds.train_x.shape == (6, 3, 32, 32) and ds.num_classes == 100
    assert ds.train_y.tolist() == train[b"fine_labels"] and ds.test_y.tolist() == test[b"fine_labels"]
    assert ds.classes[:2] == ("fine0", "fine1")


@pytest.mark.parametrize("function", [os.system, eval])
def test_a_malicious_pickle_is_refused_without_running_anything(tmp_path, function):
    marker = tmp_path / "pwned"
    argument = f"touch {marker}" if function is os.system else f"open({str(marker)!r}, 'w')"
    make_cifar10(tmp_path)
    dump(tmp_path / "cifar-10-batches-py" / "data_batch_3", {b"data": _Evil(function, argument)}, 2)
    with pytest.raises(DataFormatError, match="refusing to load") as e:
        load_dataset("cifar10", tmp_path)
    assert isinstance(e.value.__cause__, pickle.UnpicklingError)
    assert "data_batch_3" in str(e.value)
    assert not marker.exists()
    # The unpickler itself raises UnpicklingError, whatever the protocol.
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / f"evil{protocol}"
        dump(path, _Evil(function, argument), protocol)
        with open(path, "rb") as f, pytest.raises(pickle.UnpicklingError):
            data._RestrictedUnpickler(f, encoding="bytes").load()
    assert not marker.exists()


def _restricted_load(path: Path):
    with open(path, "rb") as f:
        return data._build_arrays(data._RestrictedUnpickler(f, encoding="bytes").load())


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_the_unpickler_restores_numeric_arrays_exactly(tmp_path, protocol):
    rng = np.random.default_rng(0)
    payload = {
        b"u8": rng.integers(0, 256, (3, 5), dtype=np.uint8),
        b"f64_big_endian": rng.normal(size=7).astype(">f8"),
        b"i32_fortran": np.asfortranarray(rng.integers(-9, 9, (4, 3)).astype(np.int32)),
        b"bool": np.array([True, False, True]),
        b"empty": np.zeros((0, 3072), np.uint8),
        b"scalars": [np.int64(7), np.float32(0.5)],
    }
    dump(tmp_path / "p", payload, protocol)
    got = _restricted_load(tmp_path / "p")
    for key, want in payload.items():
        if key == b"scalars":
            assert got[key] == want and [type(v) for v in got[key]] == [np.int64, np.float32]
            continue
        assert got[key].dtype == want.dtype and got[key].shape == want.shape, key
        np.testing.assert_array_equal(got[key], want)
        assert got[key].flags.writeable


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("array", [np.array([1, "a", None], dtype=object),
                                   np.zeros(2, dtype=[("x", "u1"), ("y", "f4")]),
                                   np.array(["ab", "cd"])],
                         ids=["object", "structured", "unicode"])
def test_the_unpickler_refuses_non_numeric_arrays(tmp_path, protocol, array):
    dump(tmp_path / "p", {b"labels": array}, protocol)
    with pytest.raises(pickle.UnpicklingError, match="refusing|only raw bytes"):
        _restricted_load(tmp_path / "p")


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
# image_folder
# --------------------------------------------------------------------------------------------


def test_image_folder_rgb_split_and_colours(tmp_path):
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


def test_image_folder_grayscale_and_train_test_layout(tmp_path):
    make_image_folder(tmp_path / "train", {"a": 10, "b": 200}, n=3, mode="L")
    make_image_folder(tmp_path / "test", {"a": 10, "b": 200}, n=2, mode="L")
    ds = load_dataset("image_folder", tmp_path, image_size=12)
    assert ds.train_x.shape == (6, 1, 12, 12) and ds.test_x.shape == (4, 1, 12, 12)
    assert ds.test_y.tolist() == [0, 0, 1, 1]
    assert float(ds.test_x[3].mean()) == pytest.approx(200 / 255, abs=1e-6)


def test_image_folder_errors(tmp_path):
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


# --------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def digits_batch() -> torch.Tensor:
    return load_dataset("digits").train_x[:64]


@pytest.fixture(scope="module")
def rgb_batch() -> torch.Tensor:
    return torch.rand(32, 3, 16, 16, generator=gen(5))


@pytest.mark.parametrize("kind", ["digits", "rgb", "vectors"])
def test_augment_is_reproducible_per_sample_and_in_range(kind, digits_batch, rgb_batch):
    x = {"digits": digits_batch, "rgb": rgb_batch, "vectors": torch.randn(64, 32, generator=gen(3))}[kind]
    is_image = kind != "vectors"
    a = augment(x, 1.0, gen(1), is_image=is_image)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, augment(x, 1.0, gen(1), is_image=is_image)), "same seed, same views"
    assert not torch.equal(a, augment(x, 1.0, gen(2), is_image=is_image))
    if is_image:
        assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # Per-sample parameters: copies of one sample all come out different.
    same = x[:1].expand(16, *x.shape[1:]).contiguous()
    views = augment(same, 1.0, gen(4), is_image=is_image).flatten(1)
    distances = torch.cdist(views, views) + torch.eye(16) * 1e9
    assert float(distances.min()) > 1e-3


def test_strength_zero_is_the_identity_and_small_strength_is_close(digits_batch, rgb_batch):
    for x in (digits_batch, rgb_batch):
        out = augment(x, 0.0, gen())
        assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
        assert float((augment(x, 1e-3, gen()) - x).abs().mean()) < 0.01
    v = torch.randn(8, 32)
    assert torch.equal(augment(v, 0, is_image=False), v)


def test_strength_grows_the_change_and_is_clamped_at_two(digits_batch):
    change = [float((augment(digits_batch, s, gen()) - digits_batch).abs().mean()) for s in (0.25, 1.0, 2.0)]
    assert change[0] < change[1] < change[2]
    assert torch.equal(augment(digits_batch, 7.0, gen()), augment(digits_batch, 2.0, gen()))


def test_augmented_digits_keep_their_class():
    ds = load_dataset("digits")
    train = ds.train_x.flatten(1)
    views = augment(ds.test_x, 0.5, gen()).flatten(1)
    nearest = torch.cdist(views, train).argmin(1)
    assert float((ds.train_y[nearest] == ds.test_y).float().mean()) > 0.7  # 0.98 unaugmented, 0.1 chance


def test_two_views_differ_and_reproduce(digits_batch):
    x1, x2 = two_views(digits_batch, 1.0, gen(7))
    assert x1.shape == x2.shape == digits_batch.shape
    assert (x1 - x2).flatten(1).abs().sum(1).min() > 0, "every pair of views differs"
    y1, y2 = two_views(digits_batch, 1.0, gen(7))
    assert torch.equal(x1, y1) and torch.equal(x2, y2)
    v1, v2 = two_views(torch.randn(10, 32), 0.5, None, is_image=False)
    assert v1.shape == (10, 32) and not torch.equal(v1, v2)


def test_augment_keeps_float64_and_handles_an_empty_batch():
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    assert augment(x, 1.0, gen()).dtype == torch.float64
    assert augment(torch.zeros(0, 3, 8, 8), 1.0).shape == (0, 3, 8, 8)


@pytest.mark.parametrize("strength", [-0.1, float("nan"), "strong", True])
def test_augment_rejects_bad_strength(strength, digits_batch):
    with pytest.raises(ValueError, match="strength"):
        augment(digits_batch, strength)


def test_augment_rejects_wrong_shapes_and_dtypes():
    with pytest.raises(ValueError, match="is_image=False"):
        augment(torch.rand(4, 32), 1.0)
    with pytest.raises(ValueError, match="is_image=True"):
        augment(torch.rand(4, 1, 8, 8), 1.0, is_image=False)
    with pytest.raises(ValueError, match="floating-point"):
        augment(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), 1.0)


#: Every device of this machine: the CUDA case is collected (and runs) only where a GPU is.
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", DEVICES)
def test_augment_on_each_device_with_its_own_or_a_cpu_generator(digits_batch, rgb_batch, device):
    for x in (digits_batch.to(device), rgb_batch.to(device)):
        g = torch.Generator(device=device).manual_seed(0)
        a = augment(x, 1.0, g)
        assert a.device == x.device and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
        assert torch.equal(a, augment(x, 1.0, torch.Generator(device=device).manual_seed(0)))
        assert augment(x, 1.0, gen()).device == x.device
