"""Opt-in download against a real HTTP server on 127.0.0.1, serving small files in the real formats.

The server (``http.server`` in a thread) plays the publishers' hosts through ``HCL_DATA_MIRROR``:
gzip IDX files for MNIST, a ``cifar-10-python.tar.gz`` of real CIFAR pickles, a
``stl10_binary.tar.gz`` of real STL-10 binaries. The download code runs end to end (HTTP,
progress, checksums, extraction, placement) with the test files' own checksums passed through
``download(checksums=...)``; the loader then reads what arrived. Nothing is mocked.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import socket
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data_files import make_cifar10, write_idx
from test_stl10 import make_stl10

from hcl_core.data import DataNotFoundError, load_dataset
from hcl_core.data.download import (
    CHECKSUMS_ENV,
    MIRROR_ENV,
    DownloadError,
    download,
    downloadable,
    mirror_url,
    needs_download,
)
from hcl_core.data.idx import MNIST_FILES
from hcl_core.data.progress import Progress, reporting_to, tqdm_progress
from hcl_core.data.releases import RELEASES, Release, Remote


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class Server:
    """A loopback HTTP server of ``files`` (URL path -> bytes); paths in ``cut`` stop halfway through."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.cut:
                    self.wfile.write(body[: len(body) // 2])  # then the connection closes (HTTP/1.0)
                    self.wfile.flush()
                    return
                for i in range(0, len(body), 64 * 1024):
                    self.wfile.write(body[i : i + 64 * 1024])

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    s = Server()
    monkeypatch.setenv(MIRROR_ENV, s.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield s
    s.close()


def serve_mnist(server: Server, tmp_path: Path, n_train: int = 20, n_test: int = 10) -> tuple[dict, dict]:
    """Gzip IDX files at MNIST's published paths; returns (arrays, checksums)."""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    rng = np.random.default_rng(5)
    arrays = {MNIST_FILES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              MNIST_FILES[1]: (np.arange(n_train) % 10).astype(np.uint8),
              MNIST_FILES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              MNIST_FILES[3]: ((np.arange(n_test) * 7) % 10).astype(np.uint8)}
    checksums = {}
    for name, array in arrays.items():
        body = write_idx(src / name, array, gz=True).read_bytes()
        server.files[f"/mnist/{name}.gz"] = body
        checksums[f"{name}.gz"] = md5(body)
    return arrays, checksums


def tar_gz(folder: Path, arcname: str, extra: list[tarfile.TarInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=arcname)
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buf.getvalue()


def leftovers(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if ".hcl-download-" in str(p)) if root.exists() else []


# --------------------------------------------------------------------------------------------


def test_mnist_is_fetched_verified_placed_and_then_read_by_the_loader(server, tmp_path):
    arrays, checksums = serve_mnist(server, tmp_path)
    root = tmp_path / "data"
    reports: list[Progress] = []
    placed = download("mnist", root, progress=reports.append, checksums=checksums)
    assert sorted(p.name for p in placed) == sorted(f"{n}.gz" for n in MNIST_FILES)
    assert all(p.parent == root / "MNIST" / "raw" for p in placed) and not leftovers(root)
    assert sorted(server.requests) == sorted(f"/mnist/{n}.gz" for n in MNIST_FILES)
    for name in MNIST_FILES:  # one bar per file: opened at 0 of its length, closed at its length
        mine = [r for r in reports if r.item == f"{name}.gz" and r.step == "download"]
        size = len(server.files[f"/mnist/{name}.gz"])
        assert mine[0].done == 0 and mine[0].total == size and mine[-1].finished and mine[-1].done == size
    ds = load_dataset("mnist", root)
    assert torch.equal(ds.train_x[:, 0], torch.from_numpy(arrays[MNIST_FILES[0]]).float() / 255)
    assert ds.test_y.tolist() == arrays[MNIST_FILES[3]].tolist()
    # Present and verified: a second call fetches nothing.
    assert download("mnist", root, checksums=checksums) == [] and len(server.requests) == 4


def test_nothing_is_fetched_unless_download_is_called(server, tmp_path):
    serve_mnist(server, tmp_path)
    with pytest.raises(DataNotFoundError, match="--download"):
        load_dataset("mnist", tmp_path / "data")
    assert needs_download("mnist", tmp_path / "data") and not needs_download("digits", tmp_path)
    assert server.requests == []


def test_a_corrupt_file_is_refused_and_nothing_is_left(server, tmp_path):
    _, checksums = serve_mnist(server, tmp_path)
    body = bytearray(server.files[f"/mnist/{MNIST_FILES[2]}.gz"])
    body[len(body) // 2] ^= 0xFF
    server.files[f"/mnist/{MNIST_FILES[2]}.gz"] = bytes(body)
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="is not the published file") as e:
        download("mnist", root, checksums=checksums)
    assert "\n" not in str(e.value) and f"{MNIST_FILES[2]}.gz" in str(e.value)
    assert [p for p in root.rglob("*") if p.is_file()] == [] and not leftovers(root)


def test_an_unreachable_mirror_is_one_line_within_seconds(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port that was just free and now has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(MIRROR_ENV, f"http://127.0.0.1:{port}")
    t0 = time.perf_counter()
    with pytest.raises(DownloadError) as e:
        download("fashion_mnist", tmp_path / "data")
    assert time.perf_counter() - t0 < 10
    message = str(e.value)
    assert "\n" not in message and f"127.0.0.1:{port} refused the connection" in message and MIRROR_ENV in message
    assert not leftovers(tmp_path / "data")


def test_a_server_that_stops_mid_file_is_refused_and_nothing_is_left(server, tmp_path):
    _, checksums = serve_mnist(server, tmp_path, n_train=200)
    server.cut.add(f"/mnist/{MNIST_FILES[0]}.gz")
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="broke after") as e:
        download("mnist", root, checksums=checksums)
    assert "\n" not in str(e.value) and f"{MNIST_FILES[0]}.gz" in str(e.value)
    assert "closed the connection before the announced end" in str(e.value)
    assert [p for p in root.rglob("*") if p.is_file()] == [] and not leftovers(root)


def test_a_server_that_never_answers_times_out_in_one_line(tmp_path):
    with socket.socket() as silent:  # accepts connections (the backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        mirror = f"http://127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.perf_counter()
        with pytest.raises(DownloadError, match="did not answer within 0.5 s") as e:
            download("mnist", tmp_path / "data", mirror=mirror, timeout=0.5)
        assert time.perf_counter() - t0 < 10 and "\n" not in str(e.value)


def test_an_http_error_names_the_status_and_the_url(server, tmp_path):
    with pytest.raises(DownloadError, match="answered 404 Not Found for http://127.0.0.1") as e:
        download("cifar100", tmp_path / "data")
    assert "/~kriz/cifar-100-python.tar.gz" in str(e.value)


def test_cifar10_is_fetched_as_its_archive_unpacked_verified_and_read(server, tmp_path):
    make_cifar10(tmp_path / "src", n=6)
    batches = tmp_path / "src" / "cifar-10-batches-py"
    archive = tar_gz(batches, "cifar-10-batches-py")
    server.files["/~kriz/cifar-10-python.tar.gz"] = archive
    inner = {f"cifar-10-batches-py/{p.name}": md5(p.read_bytes()) for p in batches.iterdir()}
    root = tmp_path / "data"
    reports: list[Progress] = []
    with reporting_to(reports.append):  # the callback installed around the call gets the reports
        placed = download("cifar10", root, checksums={"cifar-10-python.tar.gz": md5(archive), **inner})
    assert sorted(p.name for p in placed) == sorted(p.name for p in batches.iterdir())
    assert {r.step for r in reports} == {"download", "extract"} and all(
        r.finished for r in reports if r.step == "extract" and r is reports[-1])
    assert not (root / "cifar-10-python.tar.gz").exists() and not leftovers(root)
    ds = load_dataset("cifar10", root)
    assert ds.train_x.shape == (30, 3, 32, 32) and ds.test_x.shape == (6, 3, 32, 32)


def test_an_archive_with_a_wrong_member_or_hostile_paths_places_nothing_outside(server, tmp_path):
    make_cifar10(tmp_path / "src", n=2)
    batches = tmp_path / "src" / "cifar-10-batches-py"
    evil = [tarfile.TarInfo("../escaped"), tarfile.TarInfo("/tmp/absolute-escape"), tarfile.TarInfo("link")]
    evil[0].size = evil[1].size = 3
    evil[2].type, evil[2].linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive = tar_gz(batches, "cifar-10-batches-py", extra=evil)
    server.files["/~kriz/cifar-10-python.tar.gz"] = archive
    root = tmp_path / "data"
    placed = download("cifar10", root, checksums={"cifar-10-python.tar.gz": md5(archive)})
    assert all(root in p.parents for p in placed) and len(placed) == 7
    assert not (tmp_path / "escaped").exists() and not (root / "link").exists()
    assert not Path("/tmp/absolute-escape").exists()

    other = tmp_path / "other"
    with pytest.raises(DownloadError, match="cifar-10-batches-py/test_batch in cifar-10-python.tar.gz is not the "
                                            "published file"):
        download("cifar10", other, checksums={"cifar-10-python.tar.gz": md5(archive),
                                              "cifar-10-batches-py/test_batch": "0" * 32})
    assert [p for p in other.rglob("*") if p.is_file()] == [] and not leftovers(other)


def test_stl10_is_fetched_unpacked_and_read_with_its_unlabelled_images(server, tmp_path):
    from hcl_core.data.unlabeled import load_unlabeled

    arrays = make_stl10(tmp_path / "src", n_train=20, n_test=10, n_unlabeled=5)
    archive = tar_gz(tmp_path / "src" / "stl10_binary", "stl10_binary")
    server.files["/~acoates/stl10/stl10_binary.tar.gz"] = archive
    root = tmp_path / "data"
    download("stl10", root, checksums={"stl10_binary.tar.gz": md5(archive)})
    ds = load_dataset("stl10", root, image_size=96)
    assert torch.equal((ds.train_x * 255).round().to(torch.uint8), torch.from_numpy(arrays["train_X"]))
    assert load_unlabeled("stl10", root, image_size=96).shape == (5, 3, 96, 96)
    assert not needs_download("stl10", root)


def test_mirror_urls_keep_the_publishers_path_and_malformed_mirrors_are_refused():
    url = RELEASES["mnist"].files[0].url
    assert mirror_url(url, "http://127.0.0.1:8000") == "http://127.0.0.1:8000/mnist/train-images-idx3-ubyte.gz"
    assert mirror_url(url, "https://m.example.org/data/") == "https://m.example.org/data/mnist/train-images-idx3-ubyte.gz"
    assert mirror_url(url, None) == url
    for bad in ("ftp://host/", "127.0.0.1:8000", "http://"):
        with pytest.raises(ValueError, match=MIRROR_ENV):
            download("mnist", "/nonexistent", mirror=bad)
    with pytest.raises(ValueError, match="cannot be downloaded"):
        download("image_folder", "/nonexistent")
    assert downloadable("stl10") and not downloadable("digits")


def test_the_published_table_is_torchvisions():
    """The URLs and MD5s are the ones the pinned torchvision lists (read from its installed source)."""
    from torchvision.datasets import CIFAR10, CIFAR100, MNIST, STL10, FashionMNIST

    for name, cls in (("mnist", MNIST), ("fashion_mnist", FashionMNIST)):
        ours = {(f.filename, f.md5) for f in RELEASES[name].files}
        assert ours == set(cls.resources)
        assert all(f.url.startswith(cls.mirrors[0]) for f in RELEASES[name].files)
    for name, cls in (("cifar10", CIFAR10), ("cifar100", CIFAR100), ("stl10", STL10)):
        (remote,) = RELEASES[name].files
        assert (remote.url, remote.md5) == (cls.url, cls.tgz_md5)
        lists = cls.train_list + cls.test_list + ([[cls.meta["filename"], cls.meta["md5"]]] if hasattr(cls, "meta")
                                                  else [])
        assert {(f"{cls.base_folder}/{f}", m) for f, m in lists} == set(RELEASES[name].unpacked)


def test_checksums_can_come_from_a_json_file_named_in_the_environment(server, tmp_path, monkeypatch):
    """How a process started by a test (the command line, the app) is given the test files' checksums."""
    import json

    _, checksums = serve_mnist(server, tmp_path)
    table = tmp_path / "md5.json"
    table.write_text(json.dumps(checksums))
    monkeypatch.setenv(CHECKSUMS_ENV, str(table))
    assert len(download("mnist", tmp_path / "data")) == 4
    table.write_text("[1, 2]")
    with pytest.raises(ValueError, match=f"{CHECKSUMS_ENV}=.* must hold a JSON object"):
        download("mnist", tmp_path / "other")


def test_too_little_disk_space_is_refused_before_fetching(server, tmp_path):
    from hcl_core.data import download as dl

    huge = Release((Remote(server.url + "/big.bin", "0" * 32, 10**16),), source="test")
    with pytest.raises(DownloadError, match="needs 10000000.00 GB of free disk space"):
        dl._check_space("big", tmp_path, huge, list(huge.files), {})
    assert server.requests == []


def test_tqdm_progress_draws_one_bar_per_step_and_closes_it(tmp_path):
    out = io.StringIO()
    report = tqdm_progress(out)
    report(Progress("download", "a.gz", 0, 1000))
    report(Progress("download", "a.gz", 1000, 1000, finished=True))
    report(Progress("read", "images", 5, None, unit="image", finished=True))
    text = out.getvalue()
    assert "download a.gz" in text and "1.00k/1.00k" in text and "read images" in text


@pytest.mark.slow
def test_mnist_downloaded_through_the_mirror_trains(server, tmp_path):
    from hcl_core.config import RunConfig
    from hcl_core.train import train

    _, checksums = serve_mnist(server, tmp_path, n_train=200, n_test=100)
    root = tmp_path / "data"
    download("mnist", root, checksums=checksums)
    result = train(RunConfig(dataset="mnist", data_root=str(root), epochs=1, batch_size=64, max_train=200,
                             eval_size=50, hidden_dim=32, feature_dim=16, threads=1), root=tmp_path / "runs")
    assert result.state == "finished", result.message


def test_gzip_is_not_decoded_in_transit(server, tmp_path):
    """A .gz file arrives byte for byte (no Content-Encoding decoding): its MD5 is the file's."""
    _, checksums = serve_mnist(server, tmp_path)
    placed = download("mnist", tmp_path / "data", checksums=checksums)
    for p in placed:
        assert md5(p.read_bytes()) == checksums[p.name]
        with gzip.open(p) as f:
            assert f.read(2) == b"\x00\x00"
    assert os.listdir(tmp_path / "data") == ["MNIST"]
