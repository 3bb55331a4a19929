"""Hostile and careless data files: each is refused fast, in one line naming the file, never a crash.

Every file here is crafted in the real format (a pickle, a gzip IDX file, a PNG) so that the
real loader, through ``load_dataset``, meets what a hostile download or a careless copy holds:
memory bombs, declarations of sizes the file cannot hold, decompression bombs, unreadable
files, pipes, folders in the place of files, files that vanish, and links.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_data_files import make_cifar10, make_image_folder, make_mnist, write_idx

from hcl_core.data import DataFormatError, DataNotFoundError, load_dataset
from hcl_core.data.files import DataFileError
from hcl_core.data.idx import MNIST_FILES
from hcl_core.data.image_folder import PIXEL_BUDGET

ROOT = Path(__file__).resolve().parent.parent


def one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text and text.strip() == text and len(text) < 600, text
    return text


def refused_fast(loader, *, seconds: float = 2.0, peak_mb: float = 64.0):
    """Run ``loader()``, which must raise; return the exception, its time and its peak Python memory."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        loader()
    except Exception as e:  # the caller checks the type
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert elapsed < seconds, f"took {elapsed:.2f} s"
        assert peak < peak_mb * 2**20, f"peak {peak / 2**20:.0f} MB"
        return e
    tracemalloc.stop()
    raise AssertionError("the hostile file was accepted")


# --------------------------------------------------------------------------------------------
# CIFAR pickles: memory bombs without code
# --------------------------------------------------------------------------------------------


def billion_laughs() -> bytes:
    """{b'labels': 9 levels of lists each holding the level below 10 times}: 10^9 ints once walked."""
    level: list = [1] * 10
    for _ in range(8):
        level = [level] * 10
    return pickle.dumps({b"labels": level}, protocol=2)


def test_a_billion_laughs_cifar_pickle_of_under_400_bytes_is_refused_at_once(tmp_path):
    make_cifar10(tmp_path)
    bomb = billion_laughs()
    assert len(bomb) < 400
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(bomb)
    e = refused_fast(lambda: load_dataset("cifar10", tmp_path), seconds=3.0, peak_mb=16)
    assert isinstance(e, DataFormatError)
    assert str(path) in one_line(e) and "memory bomb" in str(e)


def test_a_14_byte_pickle_declaring_a_2_to_the_60_byte_frame_is_one_line_not_a_memory_error(tmp_path):
    make_cifar10(tmp_path)
    frame = b"\x80\x04\x95" + struct.pack("<Q", 2**60) + b"K\x01."
    assert len(frame) == 14
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(frame)
    e = refused_fast(lambda: load_dataset("cifar10", tmp_path), seconds=3.0, peak_mb=16)
    assert isinstance(e, DataFormatError) and not isinstance(e, MemoryError)
    assert str(path) in one_line(e) and f"frame of {2**60} bytes" in str(e)


@pytest.mark.parametrize(("payload", "says"), [
    (b"\x80\x02]r\xff\xff\xff\x7f.", "memo entry 2147483647"),  # LONG_BINPUT: a 16 GB memo table
    (b"\x80\x02" + b"]" * 5000 + b"a" * 4999 + b".", "deep"),  # 5,000 nested lists
    (b"\x80\x02]q\x00h\x00a.", "contains itself"),  # a list holding itself
    (b"\x80\x02\x8e" + struct.pack("<Q", 2**62) + b".", "bytes8"),  # BINBYTES8 declaring 4 EB
])
def test_pickles_that_would_exhaust_memory_or_recurse_are_refused(tmp_path, payload, says):
    make_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_4"
    path.write_bytes(payload)
    e = refused_fast(lambda: load_dataset("cifar10", tmp_path), seconds=3.0, peak_mb=16)
    assert isinstance(e, DataFormatError)
    assert str(path) in one_line(e) and says in str(e)


def test_a_nested_label_list_is_refused_before_numpy_walks_it(tmp_path):
    make_cifar10(tmp_path, n=2)
    d = tmp_path / "cifar-10-batches-py"
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [[0, 1], [1, 0]]}
    (d / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataFormatError, match="whole-number labels"):
        load_dataset("cifar10", tmp_path)


def test_real_sized_cifar_pickles_pass_the_limits(tmp_path):
    """A batch of the real size (10,000 images with labels and file names) loads within the limits."""
    from hcl_core.data.safe_pickle import check_structure

    rng = np.random.default_rng(0)
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": [int(v) for v in rng.integers(0, 10, 10_000)],
             b"data": rng.integers(0, 256, (10_000, 3072), dtype=np.uint8),
             b"filenames": [f"img_{i}.png".encode() for i in range(10_000)]}
    t0 = time.perf_counter()
    check_structure(pickle.dumps(batch, protocol=2))
    assert time.perf_counter() - t0 < 5.0


# --------------------------------------------------------------------------------------------
# gzip / IDX: declared sizes checked before anything of that size is allocated
# --------------------------------------------------------------------------------------------


def gzip_idx_of_zeros(path: Path, dims: tuple[int, ...]) -> Path:
    """A gzip IDX file declaring ``dims`` and holding that many zero bytes, compressed as far as deflate goes."""
    header = bytes((0, 0, 0x08, len(dims))) + struct.pack(f">{len(dims)}I", *dims)
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(header)
        left = int(np.prod(dims))
        chunk = bytes(1 << 20)
        while left:
            f.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
    return path


def test_a_229_kb_gzip_mnist_file_declaring_300000_images_is_refused_from_its_header(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    make_mnist(folder)
    (folder / MNIST_FILES[0]).unlink()
    path = gzip_idx_of_zeros(folder / f"{MNIST_FILES[0]}.gz", (300_000, 28, 28))
    assert 200_000 < path.stat().st_size < 260_000  # 235 MB of pixels in ~229 KB
    e = refused_fast(lambda: load_dataset("mnist", tmp_path), seconds=3.0, peak_mb=8)
    assert isinstance(e, DataFormatError)
    assert str(path) in one_line(e) and "declares 300000 items" in str(e) and "at most 60000" in str(e)


def test_a_gzip_file_declaring_more_than_its_size_can_expand_to_is_refused_unread(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    make_mnist(folder)
    (folder / MNIST_FILES[2]).unlink()
    header = bytes((0, 0, 8, 3)) + struct.pack(">3I", 10_000, 28, 28)
    path = folder / f"{MNIST_FILES[2]}.gz"
    path.write_bytes(gzip.compress(header + bytes(100)))  # ~60 bytes cannot hold 7.8 MB
    e = refused_fast(lambda: load_dataset("mnist", tmp_path), seconds=3.0, peak_mb=8)
    assert isinstance(e, DataFormatError) and "more than a gzip file of" in one_line(e)


def test_a_gzip_file_holding_more_than_it_declares_is_refused_without_unpacking_the_rest(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    make_mnist(folder, n_train=20)
    (folder / MNIST_FILES[0]).unlink()
    header = bytes((0, 0, 8, 3)) + struct.pack(">3I", 20, 28, 28)
    path = folder / f"{MNIST_FILES[0]}.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(header + bytes(20 * 784))
        for _ in range(200):  # then 200 MB more than it declares
            f.write(bytes(1 << 20))
    e = refused_fast(lambda: load_dataset("mnist", tmp_path), seconds=3.0, peak_mb=8)
    assert isinstance(e, DataFormatError) and "padded" in one_line(e)


def test_an_mnist_file_with_images_of_another_size_is_refused(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    make_mnist(folder)
    write_idx(folder / MNIST_FILES[2], np.zeros((10, 32, 32), np.uint8))
    with pytest.raises(DataFormatError, match=r"shape \(32, 32\), but MNIST's are \(28, 28\)"):
        load_dataset("mnist", tmp_path)


def test_a_plain_idx_file_declaring_more_than_it_holds_is_refused_without_allocating_it(tmp_path):
    folder = tmp_path / "FashionMNIST" / "raw"
    make_mnist(folder)
    path = folder / MNIST_FILES[0]
    path.write_bytes(bytes((0, 0, 8, 3)) + struct.pack(">3I", 60_000, 28, 28) + bytes(784))
    e = refused_fast(lambda: load_dataset("fashion_mnist", tmp_path), seconds=3.0, peak_mb=8)
    assert isinstance(e, DataFormatError) and "truncated" in one_line(e)


# --------------------------------------------------------------------------------------------
# Images: decompression bombs, unreadable files, pipes, vanishing files, links
# --------------------------------------------------------------------------------------------


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A real PNG declaring ``width`` x ``height`` grayscale pixels, with a token of data (a few hundred bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(width + 1)))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [10_000, 20_000])  # Pillow warns above 89.5 MP and raises above twice that
def test_a_decompression_bomb_png_is_refused_from_its_header_in_one_line(tmp_path, side):
    make_image_folder(tmp_path, {"a": (1, 2, 3), "b": (4, 5, 6)}, n=3)
    bomb = png_declaring(tmp_path / "b" / "bomb.png", side, side)
    assert bomb.stat().st_size < 1_000
    e = refused_fast(lambda: load_dataset("image_folder", tmp_path), seconds=2.0, peak_mb=32)
    assert isinstance(e, DataFormatError) and str(bomb) in one_line(e) and "too large" in str(e)


def test_the_pixel_budget_holds_even_when_pillows_own_bound_is_switched_off(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    make_image_folder(tmp_path, {"a": (1, 2, 3), "b": (4, 5, 6)}, n=3)
    side = int(PIXEL_BUDGET**0.5) + 10
    bomb = png_declaring(tmp_path / "a" / "wide.png", side, side)
    e = refused_fast(lambda: load_dataset("image_folder", tmp_path, image_size=8), seconds=2.0, peak_mb=32)
    assert isinstance(e, DataFormatError) and str(bomb) in one_line(e) and "pixels" in str(e)


def without_root_override() -> list[str]:
    """A command prefix under which root, too, is denied files it has no permission for."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def load_in_subprocess(cases: list[tuple[str, Path]]) -> list[tuple[str, str]]:
    """``load_dataset(name, root)`` for each case in one fresh process: [(exception type, message)]."""
    code = textwrap.dedent(f"""
        from hcl_core.data import load_dataset
        for name, root in {[(n, str(r)) for n, r in cases]!r}:
            try:
                load_dataset(name, root, image_size=8)
                print("accepted")
            except Exception as e:
                print(type(e).__name__ + "|" + str(e).replace("\\n", "<newline>"))
    """)
    out = subprocess.run([*without_root_override(), sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return [tuple(line.split("|", 1)) for line in out.stdout.splitlines()]


def test_unreadable_images_data_files_and_class_folders_are_one_line_naming_them(tmp_path):
    make_image_folder(tmp_path / "i", {"a": (1, 2, 3), "b": (4, 5, 6)}, n=3)
    image = tmp_path / "i" / "a" / "001.png"
    image.chmod(0)
    make_mnist(tmp_path / "m" / "MNIST" / "raw")
    labels = tmp_path / "m" / "MNIST" / "raw" / MNIST_FILES[1]
    labels.chmod(0)
    make_image_folder(tmp_path / "f", {"a": (1, 2, 3), "b": (4, 5, 6)}, n=3)
    folder = tmp_path / "f" / "b"
    folder.chmod(0)
    results = load_in_subprocess([("image_folder", tmp_path / "i"), ("mnist", tmp_path / "m"),
                                  ("image_folder", tmp_path / "f")])
    for (kind, message), path in zip(results, (image, labels, folder), strict=True):
        assert kind == "DataFileError", message
        assert f"{path} cannot be read: permission denied" in message and "<newline>" not in message


def test_a_folder_where_a_data_file_should_be_is_named(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    make_mnist(folder)
    (folder / MNIST_FILES[3]).unlink()
    (folder / MNIST_FILES[3]).mkdir()
    with pytest.raises(DataNotFoundError, match="is a folder") as e:
        load_dataset("mnist", tmp_path)
    assert str(folder / MNIST_FILES[3]) in one_line(e.value)


def test_a_pipe_named_like_an_image_is_refused_without_blocking(tmp_path):
    make_image_folder(tmp_path, {"a": (1, 2, 3), "b": (4, 5, 6)}, n=3)
    fifo = tmp_path / "a" / "pipe.png"
    os.mkfifo(fifo)
    e = refused_fast(lambda: load_dataset("image_folder", tmp_path), seconds=5.0)
    assert isinstance(e, DataFileError) and str(fifo) in one_line(e) and "not a regular file" in str(e)


def test_an_image_that_vanishes_after_the_folder_was_listed_is_one_line(tmp_path):
    from hcl_core.data.image_folder import _read_images, _scan_classes

    make_image_folder(tmp_path, {"a": (1, 2, 3), "b": (4, 5, 6)}, n=3)
    listed = _scan_classes(tmp_path, tmp_path, [100, 100])
    gone = listed["b"][1]
    gone.unlink()  # as another program would between the listing and the reading
    with pytest.raises(DataNotFoundError, match="vanished") as e:
        _read_images(listed["a"] + listed["b"], 8, "RGB", tmp_path)
    assert str(gone) in one_line(e.value)

    os.symlink(tmp_path / "nowhere.png", tmp_path / "a" / "broken.png")  # a link whose target is gone
    with pytest.raises(DataNotFoundError, match="vanished") as e:
        load_dataset("image_folder", tmp_path)
    assert str(tmp_path / "a" / "broken.png") in one_line(e.value)


def test_a_class_folder_that_vanishes_while_scanning_is_one_line(tmp_path):
    from hcl_core.data.image_folder import _walk

    with pytest.raises(DataNotFoundError, match="vanished") as e:
        list(_walk(tmp_path / "gone", tmp_path, [100, 100]))
    assert str(tmp_path / "gone") in one_line(e.value)


def test_the_whole_disk_as_an_image_folder_is_refused_in_one_line_at_once():
    t0 = time.perf_counter()
    with pytest.raises(DataFormatError, match="root of the file system") as e:
        load_dataset("image_folder", "/")
    assert time.perf_counter() - t0 < 1
    one_line(e.value)


def test_a_folder_with_more_folders_than_an_image_data_set_is_refused_without_walking_it_all(tmp_path, monkeypatch):
    from hcl_core.data import image_folder

    monkeypatch.setattr(image_folder, "MAX_FOLDERS", 50)  # the bound, scaled down to a test-sized tree
    for i in range(60):
        (tmp_path / f"class{i}" / "sub").mkdir(parents=True)
    with pytest.raises(DataFormatError, match="more than 50 folders") as e:
        load_dataset("image_folder", tmp_path)
    one_line(e.value)


def test_linked_images_and_class_folders_are_followed_but_links_inside_are_not_descended(tmp_path):
    store = tmp_path / "store"
    make_image_folder(store, {"red": (255, 0, 0), "blue": (0, 0, 255)}, n=5)
    data = tmp_path / "data"
    (data / "red").mkdir(parents=True)
    for p in sorted((store / "red").iterdir()):
        os.symlink(p, data / "red" / p.name)  # linked files
    os.symlink(store / "blue", data / "blue")  # a linked class folder
    os.symlink(data, data / "red" / "loop")  # a link back up: must not be walked
    ds = load_dataset("image_folder", data, image_size=8)
    assert ds.classes == ("blue", "red") and len(ds.train_y) + len(ds.test_y) == 10
