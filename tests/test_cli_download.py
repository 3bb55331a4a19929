"""``--download`` end to end: the real command line fetches MNIST from a loopback mirror, verifies it and trains."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from test_download import Server, serve_mnist

PROJECT = Path(__file__).resolve().parent.parent
TINY = ["--threads", "1", "--max-train", "200", "--eval-size", "50", "--batch-size", "64",
        "--hidden-dim", "32", "--feature-dim", "16"]


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hcl_core", *args], capture_output=True, text=True, timeout=300,
                          cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT), "NO_PROXY": "127.0.0.1", **env})


def test_train_download_fetches_verifies_and_trains_mnist_from_a_loopback_mirror(tmp_path):
    server = Server()
    try:
        _, checksums = serve_mnist(server, tmp_path, n_train=200, n_test=100)
        (tmp_path / "md5.json").write_text(json.dumps(checksums))  # the test files' own checksums
        r = run_cli("train", "--dataset", "mnist", "--data-root", str(tmp_path / "data"), "--download", "--epochs",
                    "1", "--out", str(tmp_path / "runs"), *TINY, HCL_DATA_MIRROR=server.url,
                    HCL_DATA_CHECKSUMS=str(tmp_path / "md5.json"))
    finally:
        server.close()
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["state"] == "finished"
    assert "download train-images-idx3-ubyte.gz" in r.stderr
    assert sorted(p.name for p in (tmp_path / "data" / "MNIST" / "raw").iterdir()) == sorted(checksums)


def test_train_download_from_an_unreachable_mirror_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_cli("train", "--dataset", "mnist", "--data-root", str(tmp_path / "data"), "--download", "--out",
                str(tmp_path / "runs"), "--quiet", HCL_DATA_MIRROR=f"http://127.0.0.1:{port}")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"127.0.0.1:{port} refused the connection" in r.stderr
