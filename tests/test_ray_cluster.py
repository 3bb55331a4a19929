"""The Ray backend on a real two-node cluster on this machine, with one node killed mid-sweep.

Two ``ray start --block`` processes make the cluster: a head ("here": 1 CPU, where the driver
attaches) and a second node ("there": 2 CPUs and one declared GPU). The second node has its own
Ray temporary folder, its own TMPDIR and ``HCL_SWEEP_SHIP_BACK=1``, so a run placed there trains
in that TMPDIR and returns as a bundle, as on another host without a shared file system.
Driver and node reach the head at 127.0.0.1 (Ray names its nodes by this host's address).

The scenario, on tiny digits runs (200 samples, 1 to 20 epochs of 3 steps):

1. ``--gpus-per-run 0.5`` places every run on the GPU node: both come back as bundles and are
   imported into the sweep folder.
2. A CPU sweep is running on both nodes when every process of the second node is killed
   (SIGKILL, as a machine that dies): Ray re-runs the lost runs on the head, the sweep finishes,
   and every run of the grid is in the folder exactly once.
3. With the GPU node gone, a GPU sweep is refused in one line before any folder is created.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from test_cli import PROJECT

from hcl_core.sweep import load_sweep

RAY = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.exit(main())"]
TINY = ["--threads", "1", "--max-train", "200", "--eval-size", "50", "--batch-size", "64", "--hidden-dim", "32",
        "--feature-dim", "16"]
#: Ray's settings for the cluster: no token, no usage report, no colour; dead nodes noticed in ~2 s.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_COLOR_PREFIX": "0",
           "RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "1000",
           "RAY_health_check_failure_threshold": "4"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """One ``ray start --block`` in its own session; every process it starts carries ``tag`` in its environment."""

    def __init__(self, name: str, root: Path, args: list[str], env: dict[str, str]):
        self.name, self.tag = name, f"{root.name}-{name}"
        self.temp = root / name  # short: Ray's socket paths must fit in 107 characters
        self.log = root / f"{name}.log"
        full_env = {**os.environ, **RAY_ENV, **env, "HCL_TEST_RAY_NODE": self.tag}
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([*RAY, "start", "--block", "--temp-dir", str(self.temp),
                                          "--disable-usage-stats", "--object-store-memory", str(100 * 1024**2),
                                          "--dashboard-agent-listen-port", str(free_port()), *args],
                                         stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=PROJECT,
                                         start_new_session=True)

    def wait_started(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while "Ray runtime started" not in self.log.read_text():
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.2)

    def processes(self) -> list[psutil.Process]:
        """This node's processes: the raylet and its helpers, and the workers (each in its own group)."""
        found = []
        for p in psutil.process_iter():
            try:
                if p.environ().get("HCL_TEST_RAY_NODE") == self.tag:
                    found.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def kill(self) -> None:
        """SIGKILL every process of the node at once, as when its machine dies."""
        for p in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        self.proc.wait(30)


@pytest.fixture
def cluster():
    root = Path(tempfile.mkdtemp(prefix="hclray-"))
    port = free_port()
    here = Node("here", root, ["--head", "--port", str(port), "--num-cpus", "1", "--resources", '{"hcl_here": 1}',
                               "--include-dashboard", "false", "--ray-client-server-port", str(free_port())], {})
    nodes = [here]
    try:
        here.wait_started()
        there_tmp = root / "there-tmp"
        there_tmp.mkdir()
        there = Node("there", root, ["--address", f"127.0.0.1:{port}", "--num-cpus", "2", "--num-gpus", "1",
                                     "--resources", '{"hcl_there": 1}'],
                     {"TMPDIR": str(there_tmp), "HCL_SWEEP_SHIP_BACK": "1"})
        nodes.append(there)
        there.wait_started()
        yield {"address": f"127.0.0.1:{port}", "here": here, "there": there, "there_tmp": there_tmp}
    finally:
        for node in nodes:
            if node.proc.poll() is None:
                os.killpg(node.proc.pid, signal.SIGKILL)
            node.kill()
        subprocess.run(["rm", "-rf", str(root)], check=False)


def sweep(cluster: dict, out: Path, name: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, **RAY_ENV,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "hcl_core", "sweep", "--backend", "ray", "--address",
                             cluster["address"], "--out", str(out), "--sweep-name", name, *TINY, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=PROJECT)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the sweep did not finish in {timeout} s: {err[-3000:]}") from None
    return proc.returncode, out, err


def records(folder: Path) -> list[dict]:
    return json.loads((folder / "sweep.json").read_text())["runs"]


@pytest.mark.slow
def test_a_two_node_cluster_places_gpu_runs_and_survives_losing_a_node(cluster, tmp_path):
    # 1. GPU runs go to the GPU node (the only one with a GPU), and come back as bundles
    rc, out, err = finish(sweep(cluster, tmp_path, "gpu", "--gpus-per-run", "0.5", "--losses", "info_nce,hcl",
                                "--betas", "1", "--seeds", "0", "--epochs", "1"))
    assert rc == 0, err
    assert "(ray, 1 CPU, 0.5 GPU and 1 thread(s) per run)" in err
    gpu_runs = records(tmp_path / "gpu")
    assert len(gpu_runs) == 2 and {r["state"] for r in gpu_runs} == {"finished"}
    assert all(r["shipped"] for r in gpu_runs)  # trained on the node that ships back: the GPU node
    assert len({r["node"] for r in gpu_runs}) == 1
    assert {r["device"] for r in gpu_runs} == {"cpu"}  # "auto" there: Ray's GPU is declared, CUDA is absent
    runs, rows = load_sweep(tmp_path / "gpu")
    assert sorted(r.config.loss for r in runs) == ["hcl", "info_nce"] and all(r.state == "finished" for r in runs)
    assert all(r.snapshot_epochs() == [0, 1] for r in runs) and [row["n"] for row in rows] == [1, 1]
    gpu_node = gpu_runs[0]["node"]
    assert not any(cluster["there_tmp"].glob("hcl-sweep-*/*"))  # the node kept no copy

    # 2. a CPU sweep on both nodes; the GPU node dies while one of its runs is training
    grid = ["--losses", "info_nce,hcl", "--betas", "1", "--seeds", "0,1,2", "--epochs", "20", "--snapshot-every", "1"]
    proc = sweep(cluster, tmp_path, "cpu", "--retries", "2", *grid)
    deadline = time.monotonic() + 240
    in_flight: list[Path] = []
    while not in_flight:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no run started on the second node"
        in_flight = list(cluster["there_tmp"].glob("hcl-sweep-*/*/snapshots/epoch_0000.npz"))
        time.sleep(0.1)
    killed = json.loads((in_flight[0].parents[1] / "config.json").read_text())
    cluster["there"].kill()
    rc, out, err = finish(proc)
    assert rc == 0, err  # every lost run was re-run on the head
    cpu_runs = records(tmp_path / "cpu")
    assert sorted((r["loss"], r["seed"]) for r in cpu_runs) == sorted(
        (loss, seed) for loss in ("info_nce", "hcl") for seed in (0, 1, 2))  # each run once, none lost
    assert all(r["state"] == "finished" for r in cpu_runs)
    rerun = next(r for r in cpu_runs if (r["loss"], r["seed"]) == (killed["loss"], killed["seed"]))
    assert rerun["node"] != gpu_node and not rerun["shipped"]  # the retry ran on the head, into the folder
    runs, rows = load_sweep(tmp_path / "cpu")
    assert len(runs) == 6 and all(r.state == "finished" for r in runs)
    assert [(row["loss"], row["n"], row["failed"]) for row in rows] == [("info_nce", 3, 0), ("hcl", 3, 0)]
    assert json.loads(out.strip().splitlines()[-1])["finished"] == 6

    # 3. no node has a GPU any more: refused in one line, before any folder exists
    rc, out, err = finish(sweep(cluster, tmp_path, "gone", "--gpus-per-run", "0.5", "--losses", "info_nce",
                                "--seeds", "0", "--epochs", "1"), timeout=120)
    assert rc == 2 and err.strip().splitlines()[-1] == (
        f"error: no node of the Ray cluster at {cluster['address']} can give a run 1 CPU, 0.5 GPU and 1 thread(s) "
        "per run: lower --cpus-per-run or --gpus-per-run, or add a node that has them")
    assert not (tmp_path / "gone").exists()
