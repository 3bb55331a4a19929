"""The command line as a user runs it: imports, ``list`` without torch, the tqdm progress bars.

Every test here starts the real ``python -m hcl_core`` in a subprocess and reads what it prints.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from hcl_core.config import RunConfig
from hcl_core.store import RunWriter

PROJECT = Path(__file__).resolve().parents[1]
#: A run of about a second on digits: 200 training samples, 3 steps an epoch, 50 embedded.
TINY = ["--threads", "1", "--max-train", "200", "--eval-size", "50", "--batch-size", "64",
        "--hidden-dim", "32", "--feature-dim", "16"]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))}


def hcl(*args: str, timeout: float = 300, python: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python [python...] -m hcl_core args...`` in the project folder."""
    return subprocess.run([sys.executable, *python, "-m", "hcl_core", *args], capture_output=True, text=True,
                          env=env(), cwd=PROJECT, timeout=timeout)


def test_importing_the_cli_loads_no_torch():
    code = "import hcl_core.cli, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), cwd=PROJECT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_list_prints_the_runs_without_importing_torch(tmp_path):
    writer = RunWriter(tmp_path, RunConfig(loss="info_nce", seed=4), run_id="a-finished-run")
    writer.close("finished", summary={"epochs": 3, "few_shot_probe_acc": 0.8125, "knn_acc": 0.75})
    proc = hcl("list", "--out", str(tmp_path), python=("-X", "importtime"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["run", "state", "epochs", "few-shot", "probe", "kNN"]  # headers: METRICS[...].short
    assert lines[1].split() == ["a-finished-run", "finished", "3", "0.812", "0.750"]
    imported = {m.group(1).strip() for m in re.finditer(r"^import time:.*\|\s*(\S+)\s*$", proc.stderr, re.M)}
    assert "hcl_core.store" in imported and "torch" not in imported and "pandas" not in imported


def test_train_draws_a_tqdm_bar_of_steps_on_stderr(tmp_path):
    proc = hcl("train", "--epochs", "2", "--snapshot-every", "1", "--out", str(tmp_path), *TINY)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["state"] == "finished" and result["steps"] == 6
    err = proc.stderr
    assert f"training on cpu: 200 samples, 6 steps -> {result['run_dir']}" in err
    # tqdm's bar, last drawn at 6 of 6 steps, with the epoch and the loss of the last step
    final = [frame for frame in re.split(r"[\r\n]", err) if frame.startswith("train: 100%")]
    assert final, err
    assert re.search(r"\| 6/6 \[\d\d:\d\d<00:00, .*step/s, epoch 2/2 loss \d+\.\d{4}\]$", final[-1]), final[-1]
    assert re.search(r"eval epoch 2: linear probe 0\.\d{3}  few-shot probe 0\.\d{3}  kNN 0\.\d{3}", err)
    assert "Traceback" not in err


def test_sweep_draws_a_tqdm_bar_of_runs_on_stderr(tmp_path):
    proc = hcl("sweep", "--losses", "info_nce,hcl", "--betas", "1", "--seeds", "0", "--epochs", "1",
               "--workers", "1", "--out", str(tmp_path), "--sweep-name", "bar", *TINY)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert err.startswith(f"sweep of 2 runs -> {tmp_path / 'bar'} (local, 1 worker(s) x 1 thread(s))")
    assert re.search(r"\[1/2\] info_nce seed 0: linear probe 0\.\d{3}  kNN 0\.\d{3}", err)
    assert re.search(r"\[2/2\] hcl β=1 seed 0: linear probe 0\.\d{3}  kNN 0\.\d{3}", err)
    final = [frame for frame in re.split(r"[\r\n]", err) if frame.startswith("sweep: 100%")]
    assert final and re.search(r"\| 2/2 \[", final[-1]), err
    assert json.loads(proc.stdout.strip().splitlines()[-1])["finished"] == 2
