"""Every failure a user, a file or a disk can cause is one line on stderr and exit code 2.

Each case runs the real ``python -m hcl_core`` in a subprocess against a real failure: a path
that is a file, a folder the process may not write (``/sys``, which even root may not write),
corrupt and hostile data files, a file-size limit hit mid-run, SIGINT. A bug (an exception no
user can cause) must still show its traceback.
"""

from __future__ import annotations

import errno
import json
import resource
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import PROJECT, TINY, env, hcl

from hcl_core.errors import Where, describe_os_error, one_line, user_message
from hcl_core.store import list_runs, load_run

#: A folder that exists and that no process may write in, root included (sysfs is read-only).
UNWRITABLE = Path("/sys/kernel")


def one_error_line(proc: subprocess.CompletedProcess, *, code: int = 2) -> str:
    """The error line of a refused command, after checking it is the only one and that it is clean."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    err = proc.stderr
    assert "Traceback" not in err and "\x1b" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and err.rstrip("\n").endswith(lines[0]), err
    assert ".import-" not in lines[0] and ".tmp" not in lines[0] and "hcl-sweep-" not in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------------------------
# --out that cannot hold runs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_out_naming_a_file_is_one_line(tmp_path, command):
    afile = tmp_path / "models.txt"
    afile.write_text("not a folder")
    line = one_error_line(hcl(command, "--epochs", "1", "--out", str(afile), *TINY))
    assert line == (f"error: --out {afile} is a file, not a folder: give a folder for the runs "
                    "(it is created if missing)")
    assert afile.read_text() == "not a folder"


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_out_below_a_file_is_one_line(tmp_path, command):
    afile = tmp_path / "models.txt"
    afile.write_text("")
    line = one_error_line(hcl(command, "--epochs", "1", "--out", str(afile / "runs"), *TINY))
    assert line == (f"error: --out {afile / 'runs'}: a part of this path is a file, not a folder; "
                    "give a folder for the runs")


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_out_in_a_folder_nobody_may_write_is_one_line(command):
    line = one_error_line(hcl(command, "--epochs", "1", "--out", str(UNWRITABLE), *TINY))
    assert line == (f"error: --out {UNWRITABLE}: permission denied; check its permissions, "
                    "or choose another --out")
    line = one_error_line(hcl(command, "--epochs", "1", "--out", str(UNWRITABLE / "hcl-runs"), *TINY))
    assert line.startswith(f"error: --out {UNWRITABLE / 'hcl-runs'}: ") and "choose another --out" in line


def test_list_of_a_file_is_one_line(tmp_path):
    (tmp_path / "f").write_text("")
    assert one_error_line(hcl("list", "--out", str(tmp_path / "f"))) == (
        f"error: --out {tmp_path / 'f'} is a file, not a folder: give the folder holding the runs")


# --------------------------------------------------------------------------------------------
# data files: corrupt, unreadable, hostile
# --------------------------------------------------------------------------------------------


def _idx(dims: tuple[int, ...], payload: bytes | None = None) -> bytes:
    header = bytes((0, 0, 0x08, len(dims))) + struct.pack(f">{len(dims)}I", *dims)
    size = 1
    for d in dims:
        size *= d
    return header + (payload if payload is not None else bytes(size))


def _mnist(root: Path, images: bytes | None = None) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(images if images is not None else _idx((20, 28, 28)))
    (raw / "train-labels-idx1-ubyte").write_bytes(_idx((20,), bytes(i % 10 for i in range(20))))
    (raw / "t10k-images-idx3-ubyte").write_bytes(_idx((10, 28, 28)))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(_idx((10,), bytes(range(10))))
    return raw


def test_a_corrupt_data_file_is_one_line(tmp_path):
    raw = _mnist(tmp_path / "data", images=_idx((20, 28, 28))[:500])  # truncated
    line = one_error_line(hcl("train", "--dataset", "mnist", "--data-root", str(tmp_path / "data"),
                              "--out", str(tmp_path / "m"), *TINY))
    assert str(raw / "train-images-idx3-ubyte") in line and "truncated" in line
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_an_unreadable_data_file_is_one_line(tmp_path):
    """A data file whose read fails with EIO (a link to /proc/self/mem: reading its first page fails)."""
    raw = _mnist(tmp_path / "data")
    (raw / "train-images-idx3-ubyte").unlink()
    (raw / "train-images-idx3-ubyte").symlink_to("/proc/self/mem")
    line = one_error_line(hcl("train", "--dataset", "mnist", "--data-root", str(tmp_path / "data"),
                              "--out", str(tmp_path / "m"), *TINY))
    assert "input/output error" in line and str(tmp_path / "data") in line


def test_a_cifar_pickle_declaring_a_huge_frame_is_one_line(tmp_path):
    """14 bytes declaring a 2**60-byte pickle frame: reading it must not end in a MemoryError traceback."""
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    bomb = b"\x80\x04\x95" + struct.pack("<Q", 2**60) + b"."
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(bomb)
    line = one_error_line(hcl("train", "--dataset", "cifar10", "--data-root", str(tmp_path / "data"),
                              "--out", str(tmp_path / "m"), *TINY))
    assert str(tmp_path / "data") in line


def test_a_decompression_bomb_image_is_one_line(tmp_path):
    from PIL import Image

    root = tmp_path / "images"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), color=40 * i).save(root / cls / f"{i}.png")
    Image.new("1", (15_000, 15_000)).save(root / "dog" / "huge.png")  # 225 Mpixel, a few kB on disk
    assert (root / "dog" / "huge.png").stat().st_size < 100_000
    line = one_error_line(hcl("train", "--dataset", "image_folder", "--data-root", str(root),
                              "--out", str(tmp_path / "m"), *TINY))
    assert str(root) in line and "too large" in line


def test_missing_data_is_one_line(tmp_path):
    line = one_error_line(hcl("train", "--dataset", "mnist", "--data-root", str(tmp_path / "nowhere"),
                              "--out", str(tmp_path / "m"), *TINY))
    assert "MNIST files not found" in line and str(tmp_path / "nowhere") in line


# --------------------------------------------------------------------------------------------
# a disk that refuses a write mid-run
# --------------------------------------------------------------------------------------------


def _limit_file_size() -> None:
    # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG, as one past a quota would.
    resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))


def test_a_write_refused_mid_run_is_one_line(tmp_path):
    """The run's 400 kB checkpoint cannot be written (file-size limit 64 kB): one line naming the run."""
    proc = subprocess.run([sys.executable, "-m", "hcl_core", "train", "--epochs", "2", "--out", str(tmp_path),
                           "--threads", "1", "--max-train", "200", "--eval-size", "50", "--quiet"],
                          capture_output=True, text=True, env=env(), cwd=PROJECT, timeout=300,
                          preexec_fn=_limit_file_size)
    line = one_error_line(proc)
    runs, _ = list_runs(tmp_path)
    assert len(runs) == 1
    assert line == (f"error: while writing the run ({runs[0].path}): a file grew past the size this system "
                    "allows (a quota or ulimit -f); free space or raise the limit")
    assert runs[0].config.epochs == 2  # what was written before the refusal stays readable


# --------------------------------------------------------------------------------------------
# runs and bundles: show, export, import
# --------------------------------------------------------------------------------------------


def test_run_and_bundle_errors_are_one_line(tmp_path):
    line = one_error_line(hcl("show", "nope", "--out", str(tmp_path)))
    assert line == f"error: no run matching 'nope' under {tmp_path}"
    not_zip = tmp_path / "run\x1b[31m.zip"  # an escape sequence in the name must not reach the terminal
    not_zip.write_text("not a zip")
    line = one_error_line(hcl("import", str(not_zip), "--out", str(tmp_path / "m")))
    assert line.startswith("error: refused:") and "is not a zip file" in line
    missing = one_error_line(hcl("import", str(tmp_path / "none.zip"), "--out", str(tmp_path / "m")))
    assert missing == f"error: {tmp_path / 'none.zip'} does not exist"


def test_a_corrupt_bundle_is_refused_without_temporary_folder_names(tmp_path):
    import zipfile

    from hcl_core.config import RunConfig
    from hcl_core.store import RunWriter

    writer = RunWriter(tmp_path / "src", RunConfig(), run_id="r")
    writer.close("finished")
    bundle = tmp_path / "bad.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.write(writer.path / "config.json", "r/config.json")
        zf.writestr("r/snapshots/epoch_0001.npz", b"PK\x03\x04 truncated")
    line = one_error_line(hcl("import", str(bundle), "--out", str(tmp_path / "m")))
    assert "snapshots/epoch_0001.npz" in line


def test_export_to_a_folder_nobody_may_write_is_one_line(tmp_path):
    from hcl_core.config import RunConfig
    from hcl_core.store import RunWriter

    writer = RunWriter(tmp_path, RunConfig(), run_id="r")
    writer.close("finished")
    line = one_error_line(hcl("export", str(writer.path), "--to", str(UNWRITABLE / "r.zip")))
    assert line == f"error: {UNWRITABLE / 'r.zip'}: permission denied; check its permissions, or choose another --to"
    afile = tmp_path / "f"
    afile.write_text("")
    line = one_error_line(hcl("export", str(writer.path), "--to", str(afile / "r.zip")))
    assert line.startswith(f"error: {afile}: it is a file, not a folder")


# --------------------------------------------------------------------------------------------
# Ctrl-C
# --------------------------------------------------------------------------------------------


def interrupt(args: list[str], ready, timeout: float = 120.0) -> tuple[int, str, str]:
    """Start ``python -m hcl_core args``, send SIGINT (Ctrl-C) once ``ready()``; ``(code, stdout, stderr)``."""
    proc = subprocess.Popen([sys.executable, "-m", "hcl_core", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(), cwd=PROJECT)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def test_ctrl_c_stops_train_with_one_line_and_exit_130(tmp_path):
    code, _, err = interrupt(["train", "--epochs", "1000", "--snapshot-every", "1", "--quiet", "--out", str(tmp_path),
                              *TINY], lambda: len(list(tmp_path.glob("*/snapshots/epoch_*.npz"))) >= 2)
    assert code == 130, err
    run = list_runs(tmp_path)[0][0]
    assert err.splitlines()[-1].startswith("stopped:") and str(run.path) in err.splitlines()[-1]
    assert len([line for line in err.splitlines() if line.strip()]) == 1 and "Traceback" not in err
    assert load_run(run.path).snapshot_epochs()[:2] == [0, 1]  # nothing written before is lost


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep_and_keeps_what_came_back(tmp_path):
    code, out, err = interrupt(["sweep", "--losses", "info_nce,hcl", "--betas", "1", "--seeds", "0,1", "--epochs",
                                "1000", "--workers", "1", "--quiet", "--out", str(tmp_path), "--sweep-name", "s",
                                *TINY], lambda: len(list(tmp_path.glob("s/*/snapshots/epoch_*.npz"))) >= 2)
    assert code == 130, err
    assert err.splitlines()[-1].startswith("stopped: Ctrl-C; 0 of 4 runs came back") and "Traceback" not in err
    manifest = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert manifest["state"] == "interrupted" and (tmp_path / "s" / "summary.csv").is_file()
    assert json.loads(out.strip().splitlines()[-1])["runs"] == 0


# --------------------------------------------------------------------------------------------
# a bug keeps its traceback; the messages themselves
# --------------------------------------------------------------------------------------------


def test_a_bug_still_shows_its_traceback(tmp_path):
    code = ("import sys, hcl_core.cli as cli, hcl_core.store as store\n"
            "store.list_runs = lambda *a, **k: 1 / 0\n"
            f"sys.exit(cli.main(['list', '--out', {str(tmp_path)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), cwd=PROJECT,
                          timeout=60)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ZeroDivisionError" in proc.stderr


def test_os_errors_name_the_file_the_cause_and_the_fix():
    out = Where(path="/data/models", flag="--out", doing="training")
    full = OSError(errno.ENOSPC, "No space left on device", "/data/models/r/checkpoint.pt")
    assert describe_os_error(full, out) == ("/data/models/r/checkpoint.pt: no space left on the disk; "
                                            "free some space and try again, or choose another --out")
    assert describe_os_error(OSError(errno.ENOSPC, "No space left on device"), out) == (
        "while training (--out /data/models): no space left on the disk; free some space and try again, "
        "or choose another --out")
    assert describe_os_error(PermissionError(errno.EACCES, "Permission denied", "/data/models"), out) == (
        "--out /data/models: permission denied; check its permissions, or choose another --out")
    assert describe_os_error(IsADirectoryError(errno.EISDIR, "Is a directory", "/x/run.zip")) == (
        "/x/run.zip: it is a folder, not a file; give the path of a file")
    assert user_message(MemoryError(), Where(doing="importing b.zip")) == (
        "out of memory while importing b.zip: close other programs and try again")
    assert user_message(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"),
                        Where(doing="training", memory_advice="use less")) == "out of memory while training: use less"
    assert user_message(KeyError("x")) is None and user_message(RuntimeError("shape mismatch")) is None


def test_messages_are_one_printable_line_without_temporary_folders():
    assert one_line("a\x1b[31mred\x1b[0m\nnext\tline \x07bell") == "ared next line bell"
    assert one_line("/srv/.import-k2j4_x/snapshots/epoch_0001.npz: corrupt") == "snapshots/epoch_0001.npz: corrupt"
    assert one_line("/sys/.run.zip.d82trtyk.tmp: permission denied") == "/sys/run.zip: permission denied"
    assert one_line("/tmp/hcl-sweep-ab12cd/20261201-run/config.json") == "20261201-run/config.json"
