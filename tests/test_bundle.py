"""Run bundles: export a real run to a zip, import it back, and refuse every unsafe bundle."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hcl_core import cli
from hcl_core.bundle import BundleError, export_run, import_bundle
from hcl_core.config import RunConfig
from hcl_core.store import RunFileError, RunWriter, list_runs, load_run
from hcl_core.train import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real tiny run: snapshots at epochs 0, 1, 2, a checkpoint, metrics, eval inputs."""
    threads = torch.get_num_threads()
    try:
        result = train(RunConfig(epochs=2, snapshot_every=1, threads=1, max_train=200, eval_size=50, batch_size=64,
                                 hidden_dim=32, feature_dim=16, name="bundled"),
                       root=tmp_path_factory.mktemp("models"))
    finally:
        torch.set_num_threads(threads)
    assert result.state == "finished"
    return result.run_dir


@pytest.fixture(scope="module")
def bundle(run_dir, tmp_path_factory) -> Path:
    return export_run(run_dir, tmp_path_factory.mktemp("bundles") / "run.zip")


def _members(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _zip(path: Path, members: dict[str, bytes], *, infos: list[tuple[zipfile.ZipInfo, bytes]] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for info, data in infos:
            zf.writestr(info, data)
    return path


def _variant(bundle: Path, tmp_path: Path, *, drop: tuple[str, ...] = (), **replace: bytes) -> Path:
    """The good bundle with some members replaced (by file name in the run) or dropped."""
    members = _members(bundle)
    top = next(iter(members)).split("/")[0]
    out = {}
    for name, data in members.items():
        rel = name.split("/", 1)[1]
        if rel in drop:
            continue
        out[name] = replace.pop(rel.replace("/", "__").replace(".", "_"), data)
    for key, data in replace.items():  # new members
        out[f"{top}/{key.replace('__', '/')}"] = data
    return _zip(tmp_path / "variant.zip", out)


def _patch_headers(path: Path, name: str, *, local_at: int, central_at: int, value: bytes) -> None:
    """Overwrite a field of one member's local header and central-directory entry (a hand-made zip)."""
    raw, encoded = bytearray(path.read_bytes()), name.encode()
    for sig, name_at, at in ((b"PK\x03\x04", 30, local_at), (b"PK\x01\x02", 46, central_at)):
        start = 0
        while (i := raw.find(sig, start)) >= 0:
            if raw[i + name_at : i + name_at + len(encoded)] == encoded:
                raw[i + at : i + at + len(value)] = value
            start = i + 4
    path.write_bytes(bytes(raw))


def _visible(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def _assert_refused(zip_path: Path, root: Path, match: str, **limits) -> BundleError:
    before = _visible(root)
    with pytest.raises(BundleError, match=match) as e:
        import_bundle(zip_path, root, **limits)
    assert _visible(root) == before, "a refused bundle must leave nothing behind (not even its temp folder)"
    return e.value


# --------------------------------------------------------------------------------------------
# the round trip
# --------------------------------------------------------------------------------------------


def test_export_then_import_gives_the_same_run(run_dir, bundle, tmp_path):
    names = sorted(_members(bundle))
    top = run_dir.name
    assert names == sorted(f"{top}/{rel}" for rel in (
        "config.json", "status.json", "metrics.jsonl", "eval_inputs.npz", "checkpoint.pt",
        "snapshots/epoch_0000.npz", "snapshots/epoch_0001.npz", "snapshots/epoch_0002.npz"))
    imported = import_bundle(bundle, tmp_path / "models")
    assert imported == tmp_path / "models" / top
    a, b = load_run(run_dir), load_run(imported)
    assert b.config == a.config and b.state == "finished" and b.summary == a.summary
    assert b.events() == a.events()
    assert b.snapshot_epochs() == [0, 1, 2]
    for epoch in b.snapshot_epochs():
        sa, sb = a.load_snapshot(epoch), b.load_snapshot(epoch)
        assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
    ca, cb = a.load_checkpoint(), b.load_checkpoint()
    assert ca["epoch"] == cb["epoch"] and all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])
    assert b.status["imported"]["from"] == "run.zip" and "pid" not in b.status
    runs, warnings = list_runs(tmp_path / "models")
    assert [r.run_id for r in runs] == [top] and warnings == []


def test_import_never_overwrites_an_existing_run(bundle, tmp_path):
    root = tmp_path / "models"
    first = import_bundle(bundle, root)
    (first / "notes").write_text("mine")
    second = import_bundle(bundle, root)
    third = import_bundle(bundle, root)
    assert len({first, second, third}) == 3 and second.name == f"{first.name}-2" and third.name == f"{first.name}-3"
    assert (first / "notes").read_text() == "mine"
    assert len(list_runs(root)[0]) == 3


def test_export_leaves_out_temporary_and_unknown_files(run_dir, tmp_path):
    strays = (run_dir / ".checkpoint.pt.x1y2.tmp", run_dir / "notes.txt", run_dir / "snapshots" / "epoch_0003.npz.bak")
    for p in strays:
        p.write_bytes(b"half written or private")
    try:
        names = _members(export_run(run_dir, tmp_path / "b.zip"))
    finally:
        for p in strays:
            p.unlink()
    assert not any(n.endswith((".tmp", "notes.txt", ".bak")) for n in names)


def test_export_refuses_to_overwrite_a_running_run_and_symlinks(run_dir, tmp_path):
    dest = tmp_path / "b.zip"
    dest.write_bytes(b"precious")
    with pytest.raises(BundleError, match="already exists"):
        export_run(run_dir, dest)
    assert dest.read_bytes() == b"precious"
    assert zipfile.is_zipfile(export_run(run_dir, dest, overwrite=True))

    live = RunWriter(tmp_path / "models", RunConfig())  # this process is alive: the run is running
    with pytest.raises(BundleError, match="still training"):
        export_run(live.path, tmp_path / "live.zip")
    live.close("stopped")

    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    (live.path / "checkpoint.pt").symlink_to(secret)
    with pytest.raises(BundleError, match="symbolic link"):
        export_run(live.path, tmp_path / "link.zip")
    assert not (tmp_path / "link.zip").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    with pytest.raises(RunFileError, match="no config.json"):
        export_run(tmp_path, tmp_path / "nothing.zip")


def test_a_bundle_with_files_at_its_root_is_named_after_the_zip(bundle, tmp_path):
    flat = {name.split("/", 1)[1]: data for name, data in _members(bundle).items()}
    path = import_bundle(_zip(tmp_path / "my-run.zip", flat), tmp_path / "models")
    assert path.name == "my-run" and load_run(path).snapshot_epochs() == [0, 1, 2]


def test_a_bundle_of_a_run_that_never_ended_imports_as_interrupted(bundle, tmp_path):
    status = {"state": "running", "pid": os.getpid(), "host": os.uname().nodename, "started": 1.0}
    path = import_bundle(_variant(bundle, tmp_path, status_json=json.dumps(status).encode()), tmp_path / "m")
    run = load_run(path)
    assert run.state == "interrupted" and "pid" not in run.status and "host" not in run.status


# --------------------------------------------------------------------------------------------
# refusals: names
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, match", [
    ("../evil/config.json", "path traversal"),
    ("run/../../evil.json", "path traversal"),
    ("run/./config.json", "path traversal"),
    ("/etc/cron.d/config.json", "absolute path"),
    ("C:/Windows/config.json", "absolute path"),
    ("run\\..\\config.json", "backslash"),
])
def test_unsafe_member_names_are_refused(bundle, tmp_path, name, match):
    members = _members(bundle)
    members[name] = b"{}"
    root = tmp_path / "models"
    _assert_refused(_zip(tmp_path / "evil.zip", members), root, match)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "evil.json").exists()


def _special(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix: the high bits of external_attr are the file mode
    info.external_attr = mode << 16
    return info


@pytest.mark.parametrize("mode, match", [
    (stat.S_IFLNK | 0o777, "symbolic link"),
    (stat.S_IFIFO | 0o644, "not a plain file"),
    (stat.S_IFCHR | 0o644, "not a plain file"),
])
def test_symlinks_and_special_files_are_refused(bundle, tmp_path, mode, match):
    members = _members(bundle)
    top = next(iter(members)).split("/")[0]
    ckpt = members.pop(f"{top}/checkpoint.pt")
    # A symlink named like a run file, pointing out of the folder: extracting it would let a
    # later write go anywhere.
    zip_path = _zip(tmp_path / "link.zip", members,
                    infos=[(_special(f"{top}/checkpoint.pt", mode), b"/etc/passwd" if mode & stat.S_IFLNK else ckpt)])
    _assert_refused(zip_path, tmp_path / "models", match)


def test_duplicate_and_encrypted_members_are_refused(bundle, tmp_path):
    members = _members(bundle)
    top = next(iter(members)).split("/")[0]
    with pytest.warns(UserWarning, match="Duplicate name"):
        dup = _zip(tmp_path / "dup.zip", members, infos=[(zipfile.ZipInfo(f"{top}/config.json"), b"{}")])
    _assert_refused(dup, tmp_path / "models", "appears twice")
    # zipfile cannot write encrypted members: set the "encrypted" flag in the headers.
    enc = _zip(tmp_path / "enc.zip", members)
    _patch_headers(enc, f"{top}/metrics.jsonl", local_at=6, central_at=8, value=(0x1).to_bytes(2, "little"))
    _assert_refused(enc, tmp_path / "models", "encrypted")


@pytest.mark.parametrize("extra", ["notes.txt", "snapshots/evil.py", "checkpoint.pt.bak", "snapshots/epoch_1.npz",
                                   "sub/config.json", ".hidden"])
def test_unknown_files_are_refused(bundle, tmp_path, extra):
    members = _members(bundle)
    top = next(iter(members)).split("/")[0]
    members[f"{top}/{extra}"] = b"x"
    _assert_refused(_zip(tmp_path / "extra.zip", members), tmp_path / "models", "unknown file")


def test_a_bundle_without_a_config_or_not_a_zip_is_refused(bundle, tmp_path):
    root = tmp_path / "models"
    _assert_refused(_variant(bundle, tmp_path, drop=("config.json",)), root, "no config.json")
    (tmp_path / "not.zip").write_bytes(b"PK\x03\x04 this is no zip")
    _assert_refused(tmp_path / "not.zip", root, "not a zip file")
    _assert_refused(_zip(tmp_path / "empty.zip", {}), root, "empty")
    with pytest.raises(BundleError, match="does not exist"):
        import_bundle(tmp_path / "missing.zip", root)


# --------------------------------------------------------------------------------------------
# refusals: sizes
# --------------------------------------------------------------------------------------------


def test_size_limits_are_enforced(bundle, tmp_path):
    root = tmp_path / "models"
    sizes = {n: len(d) for n, d in _members(bundle).items()}
    biggest, total = max(sizes.values()), sum(sizes.values())
    _assert_refused(bundle, root, "per file", max_member_bytes=biggest - 1)
    _assert_refused(bundle, root, "unpacks to more than", max_total_bytes=total - 1)
    _assert_refused(bundle, root, "members", max_members=len(sizes) - 1)
    assert import_bundle(bundle, root, max_total_bytes=total, max_members=len(sizes))


def test_a_compressed_bomb_is_refused_before_it_is_unpacked(bundle, tmp_path):
    """50 MB of zeros deflate to ~50 KB: the declared size is what counts."""
    bomb = _variant(bundle, tmp_path, metrics_jsonl=b"\0" * 50_000_000)
    assert bomb.stat().st_size < 1_000_000
    _assert_refused(bomb, tmp_path / "models", "per file", max_member_bytes=10_000_000)


def test_a_member_that_lies_about_its_size_is_refused(bundle, tmp_path):
    """The headers say 10 bytes, the data is 1 MB: only 10 bytes are ever read, then the CRC fails."""
    members = _members(bundle)
    top = next(iter(members)).split("/")[0]
    payload = b"{" + b" " * 1_000_000 + b"}"
    path = _zip(tmp_path / "liar.zip", {**members, f"{top}/metrics.jsonl": payload})
    _patch_headers(path, f"{top}/metrics.jsonl", local_at=22, central_at=24, value=(10).to_bytes(4, "little"))
    _assert_refused(path, tmp_path / "models", "could not be unpacked|unpacks to more")


def test_an_npz_bomb_inside_the_bundle_is_refused(bundle, tmp_path):
    buf = io.BytesIO()
    np.savez_compressed(buf, inputs=np.zeros(40_000_000, np.uint8), labels=np.zeros(1), indices=np.zeros(1))
    assert len(buf.getvalue()) < 200_000
    bomb = _variant(bundle, tmp_path, eval_inputs_npz=buf.getvalue())
    _assert_refused(bomb, tmp_path / "models", "eval_inputs.npz unpacks to", max_member_bytes=10_000_000)


# --------------------------------------------------------------------------------------------
# refusals: content
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config, match", [
    (b'{"tau": -1}', "field tau"),
    (b'{"loss": "nope"}', "field loss"),
    (b'{"optimizer": "sgd"}', "unknown config field"),
    (b"{not json", "does not validate"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[[1, 2, 3]]", "does not validate"),
])
def test_a_config_that_does_not_validate_is_refused(bundle, tmp_path, config, match):
    _assert_refused(_variant(bundle, tmp_path, config_json=config), tmp_path / "models", match)


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("content, match", [
    (_npz(features=np.array([{"x": 1}], dtype=object), labels=np.zeros(1), z1=np.zeros(1), z2=np.zeros(1),
          z_labels=np.zeros(1)), "not a plain array file"),
    (_npz(features=np.zeros(3)), "lacks the arrays"),
    (_npz(features=np.array(["a"]), labels=np.zeros(1), z1=np.zeros(1), z2=np.zeros(1), z_labels=np.zeros(1)),
     "not a number type"),
    (b"garbage, not an npz", "not a plain array file"),
    (pickle.dumps({"features": 1}), "not a plain array file"),
])
def test_snapshots_that_need_pickle_or_are_broken_are_refused(bundle, tmp_path, content, match):
    _assert_refused(_variant(bundle, tmp_path, snapshots__epoch_0001_npz=content), tmp_path / "models", match)


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_the_safe_loader_refuses_is_refused(bundle, tmp_path):
    marker = tmp_path / "pwned"
    for obj, match in (({"model": {"w": torch.zeros(2)}, "epoch": _RunsCode(marker)}, "weights_only"),
                       (torch.zeros(3), "not a checkpoint dict"),
                       ({"epoch": 1}, "no 'model' state dict")):
        buf = io.BytesIO()
        torch.save(obj, buf)
        _assert_refused(_variant(bundle, tmp_path, checkpoint_pt=buf.getvalue()), tmp_path / "models", match)
    _assert_refused(_variant(bundle, tmp_path, checkpoint_pt=pickle.dumps(_RunsCode(marker))), tmp_path / "models",
                    "weights_only")
    _assert_refused(_variant(bundle, tmp_path, checkpoint_pt=b"\0" * 100), tmp_path / "models", "checkpoint.pt")
    assert not marker.exists(), "loading the checkpoint ran code"


def test_metrics_and_status_must_be_text_and_json(bundle, tmp_path):
    root = tmp_path / "models"
    _assert_refused(_variant(bundle, tmp_path, metrics_jsonl=b"\xff\xfe\x00"), root, "not UTF-8")
    _assert_refused(_variant(bundle, tmp_path, status_json=b"[1, 2]"), root, "JSON object")
    _assert_refused(_variant(bundle, tmp_path, status_json=b"{"), root, "not valid JSON")


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------


def test_cli_export_and_import(run_dir, tmp_path, capsys):
    dest = tmp_path / "cli.zip"
    assert cli.main(["export", run_dir.name[:15], "--to", str(dest), "--out", str(run_dir.parent)]) == 0
    assert capsys.readouterr().out.strip() == str(dest)
    assert cli.main(["export", str(run_dir), "--to", str(dest)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "already exists" in err and err.count("\n") == 1

    models = tmp_path / "models"
    assert cli.main(["import", str(dest), "--out", str(models)]) == 0
    imported = Path(capsys.readouterr().out.strip())
    assert imported.parent == models and load_run(imported).state == "finished"

    evil = _zip(tmp_path / "evil.zip", {"../config.json": b"{}"})
    assert cli.main(["import", str(evil), "--out", str(models)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refused") and "path traversal" in err and err.count("\n") == 1
    assert cli.main(["export", "no-such-run", "--to", str(tmp_path / "x.zip"), "--out", str(models)]) == 2
    assert "no run matching" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# refusals: the same validation as the store, strictly, plus what only an import can check
# --------------------------------------------------------------------------------------------


def _lines(bundle: Path) -> list[bytes]:
    members = _members(bundle)
    return next(d for n, d in members.items() if n.endswith("metrics.jsonl")).splitlines(keepends=True)


@pytest.mark.parametrize("line, match", [
    (b'{"type": "step"}\n', "metrics.jsonl line 4 \\(step\\) lacks 'step'"),
    (b'{"type": "step", "step": 1, "loss": "0.5"}\n', "line 4 \\(step\\): 'loss' should be a number"),
    (b'{"type": "eval", "epoch": 1, "knn_acc": 7}\n', "'knn_acc' should lie in"),
    (b'{"type": "baseline", "raw": "pixels"}\n', "line 4 \\(baseline\\).raw should be an object"),
    (b'{"type": "end", "state": "finished", "summary": {"baseline": 1, "epochs": -1}}\n', "'epochs' should lie in"),
    (b"[1, 2]\n", "line 4 should be an object"),
    (b"not json\n", "metrics.jsonl line 4 is not JSON"),
])
def test_a_metrics_line_the_store_would_skip_is_refused_with_its_line_number(bundle, tmp_path, line, match):
    lines = _lines(bundle)
    lines.insert(3, line)
    _assert_refused(_variant(bundle, tmp_path, metrics_jsonl=b"".join(lines)), tmp_path / "models", match)


def test_a_log_cut_short_in_its_last_line_imports(bundle, tmp_path):
    lines = _lines(bundle)
    path = import_bundle(_variant(bundle, tmp_path, metrics_jsonl=b"".join(lines) + b'{"type": "st'),
                         tmp_path / "models")
    assert len(load_run(path).events()) == len(lines)


def test_a_status_field_of_the_wrong_type_or_range_is_refused(bundle, tmp_path):
    status = json.loads(next(d for n, d in _members(bundle).items() if n.endswith("status.json")))
    for change, match in (({"summary": {**status["summary"], "baseline": "x", "knn_acc": "0.9"}}, "'knn_acc'"),
                          ({"started": "yesterday"}, "'started' should be a number"),
                          ({"state": "exploded"}, "'state' should be one of"),
                          ({"message": 42}, "'message' should be text")):
        variant = _variant(bundle, tmp_path, status_json=json.dumps({**status, **change}).encode())
        _assert_refused(variant, tmp_path / "models", match)


def test_a_run_dated_in_the_future_is_refused(bundle, tmp_path):
    status = json.loads(next(d for n, d in _members(bundle).items() if n.endswith("status.json")))
    status["started"] = time.time() + 30 * 86400
    e = _assert_refused(_variant(bundle, tmp_path, status_json=json.dumps(status).encode()), tmp_path / "models",
                        "started at .* in the future")
    assert "\n" not in str(e)


def test_a_huge_log_inside_the_size_limits_is_refused_by_its_own_limit(bundle, tmp_path):
    """The issue's bundle: 2.7 MB packed, 250 MB of log inside (under the 256 MB per-file limit)."""
    lines = _lines(bundle)
    step = lines[-3] if b'"step"' in lines[-3] else next(x for x in lines if b'"step"' in x)
    huge = b"".join(lines) + step * (250 * 1024**2 // len(step))
    variant = _variant(bundle, tmp_path, metrics_jsonl=huge)
    assert variant.stat().st_size < 5 * 1024**2
    t0 = time.perf_counter()
    _assert_refused(variant, tmp_path / "models", "metrics.jsonl is .* bytes, more than the limit of 67,108,864")
    assert time.perf_counter() - t0 < 10.0


def test_an_npz_whose_header_declares_a_trillion_floats_is_refused_without_allocating(bundle, tmp_path):
    header = repr({"descr": "<f4", "fortran_order": False, "shape": (10**12,)}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for key in ("features", "labels", "z1", "z2", "z_labels"):
            zf.writestr(f"{key}.npy", npy)
    e = _assert_refused(_variant(bundle, tmp_path, snapshots__epoch_0001_npz=buf.getvalue()), tmp_path / "models",
                        "declares shape \\(1000000000000,\\)")
    assert str(e).startswith("refused: snapshots/epoch_0001.npz")


def test_snapshots_whose_arrays_do_not_fit_each_other_are_refused(bundle, tmp_path):
    bad = _npz(features=np.zeros((5, 2), np.float32), labels=np.zeros(4), z1=np.zeros((3, 2)), z2=np.zeros((3, 2)),
               z_labels=np.zeros(3))
    _assert_refused(_variant(bundle, tmp_path, snapshots__epoch_0001_npz=bad), tmp_path / "models",
                    "features of shape \\(5, 2\\) do not fit labels")


def test_refusals_name_no_temporary_folder_and_carry_no_terminal_codes(bundle, tmp_path):
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"model": {"w": torch.zeros(2)}, "epoch": _RunsCode(marker)}, buf)
    refusals = [
        _assert_refused(_variant(bundle, tmp_path, checkpoint_pt=buf.getvalue()), tmp_path / "models", "weights_only"),
        _assert_refused(_variant(bundle, tmp_path, eval_inputs_npz=b"garbage"), tmp_path / "models", "eval_inputs"),
        _assert_refused(_variant(bundle, tmp_path, config_json=b'{"\\u001b[31mred": 1}'),
                        tmp_path / "models", "unknown config field"),
    ]
    for e in refusals:
        text = str(e)
        assert ".import-" not in text and str(tmp_path) not in text and "\x1b" not in text and "\n" not in text, text
    assert "Re-running" not in str(refusals[0]), "the safe loader's advice to turn itself off is not passed on"
    assert not marker.exists()


def test_class_names_travel_with_the_bundle(bundle, tmp_path):
    run = load_run(import_bundle(bundle, tmp_path / "models"))
    assert run.class_names(10) == tuple(str(i) for i in range(10))
    assert list(run.load_eval_inputs()["class_names"]) == [str(i) for i in range(10)]


def test_a_fifo_given_as_the_bundle_is_refused_at_once(tmp_path):
    fifo = tmp_path / "bundle.zip"
    os.mkfifo(fifo)
    with pytest.raises(BundleError, match="not a regular file"):
        import_bundle(fifo, tmp_path / "models")


def test_a_run_whose_pid_belongs_to_an_unrelated_live_process_can_be_exported(run_dir, tmp_path):
    import psutil

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        copy = Path(shutil.copytree(run_dir, tmp_path / "copy"))
        status = json.loads((copy / "status.json").read_text())
        status.update(state="running", pid=sleeper.pid, host=os.uname().nodename,
                      pid_started=psutil.Process(sleeper.pid).create_time() - 3600)
        (copy / "status.json").write_text(json.dumps(status))
        assert load_run(copy).state == "interrupted"
        assert zipfile.is_zipfile(export_run(copy, tmp_path / "b.zip"))
    finally:
        sleeper.kill()
        sleeper.wait()
