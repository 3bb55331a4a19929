"""Property-based fuzzing (hypothesis) of the run-file readers, the bundle import and the Compare page.

Each example copies a real run (trained once per module), mutates its files the ways damage and
hostility do (a JSON value replaced by any other, a key dropped or added, a line replaced,
bytes flipped or cut, a file replaced by a folder or a FIFO, a bundle member dropped or renamed)
and checks that nothing raises: ``list_runs`` and everything a page reads from a run, the command
line's ``list`` and ``show`` (exit code 0, no traceback), an import (a new run, or one line
refusing it, nothing left behind), and the Compare page (AppTest, no exception). 80, 60 and 30
examples by default; ``HCL_FUZZ_EXAMPLES`` sets more.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hcl_core import cli
from hcl_core.bundle import BundleError, export_run, import_bundle
from hcl_core.config import RunConfig
from hcl_core.runfiles import RunFileError
from hcl_core.store import list_runs
from hcl_core.train import train

PROJECT = Path(__file__).resolve().parents[1]
#: Examples per property; ``HCL_FUZZ_EXAMPLES=2000`` fuzzes longer (the default keeps the suite quick).
EXAMPLES = int(os.environ.get("HCL_FUZZ_EXAMPLES", "80"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TINY = dict(threads=1, max_train=200, eval_size=50, batch_size=64, hidden_dim=32, feature_dim=16, epochs=2,
            snapshot_every=1)
RUN_FILES = ("config.json", "status.json", "metrics.jsonl", "eval_inputs.npz", "checkpoint.pt",
             "snapshots/epoch_0000.npz", "snapshots/epoch_0002.npz")

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    import torch

    threads = torch.get_num_threads()
    try:
        return train(RunConfig(loss="hcl", **TINY), root=tmp_path_factory.mktemp("fuzz_base")).run_dir
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def base_bundle(base_run, tmp_path_factory) -> Path:
    return export_run(base_run, tmp_path_factory.mktemp("fuzz_bundle") / "run.zip")


# --------------------------------------------------------------------------------------------
# mutations
# --------------------------------------------------------------------------------------------


def mutate_value(data, value):
    """``value`` with one random change somewhere inside it."""
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(value)))
        out = dict(value)
        op = data.draw(st.sampled_from(["descend", "replace", "delete", "add"]))
        if op == "descend":
            out[key] = mutate_value(data, value[key])
        elif op == "replace":
            out[key] = data.draw(JSON)
        elif op == "delete":
            del out[key]
        else:
            out[data.draw(st.text(max_size=10))] = data.draw(JSON)
        return out
    if isinstance(value, list) and value and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(value) - 1))
        return [*value[:i], mutate_value(data, value[i]), *value[i + 1:]]
    return data.draw(JSON)


def mutate_bytes(data, raw: bytes, name: str) -> bytes:
    """A structure-aware change for JSON files and logs, raw damage for anything."""
    ops = ["flip", "cut", "insert"]
    if name.endswith(".json"):
        ops += ["json"] * 4
    if name.endswith(".jsonl"):
        ops += ["line"] * 4
    op = data.draw(st.sampled_from(ops))
    if op == "json":
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        return json.dumps(mutate_value(data, value)).encode()
    if op == "line":
        lines = raw.splitlines(keepends=True) or [b"\n"]
        i = data.draw(st.integers(0, len(lines) - 1))
        try:
            value = json.loads(lines[i])
        except ValueError:
            value = None
        new = json.dumps(mutate_value(data, value)).encode() + b"\n"
        return b"".join([*lines[:i], new, *lines[i + 1:]])
    if not raw:
        return data.draw(st.binary(max_size=64))
    at = data.draw(st.integers(0, len(raw) - 1))
    if op == "flip":
        return raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1:]
    if op == "cut":
        return raw[:at]
    return raw[:at] + data.draw(st.binary(min_size=1, max_size=64)) + raw[at:]


def damage_run(data, run: Path) -> str:
    """One random damage to one file of the run folder; returns what was done (for the failure report)."""
    name = data.draw(st.sampled_from(RUN_FILES))
    path = run / name
    kind = data.draw(st.sampled_from(["content"] * 8 + ["folder", "fifo", "missing"]))
    if kind == "content" and path.is_file():
        path.write_bytes(mutate_bytes(data, path.read_bytes(), name))
    else:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        if kind == "folder":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
    return f"{kind} {name}"


# --------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------


def read_everything(root: Path) -> None:
    """Everything the pages and the command line read from the runs under ``root``: nothing may raise
    except RunFileError from a loader, which the pages catch."""
    runs, warnings = list_runs(root)
    assert all(isinstance(w, str) and "\n" not in w for w in warnings)
    for run in runs:
        assert run.state in ("running", "finished", "stopped", "failed", "interrupted")
        _ = run.summary, run.message, run.label, run.baseline
        h = run.history()
        assert len(h.steps) == len(h.losses) and all(isinstance(v, float) for v in h.losses)
        assert all(isinstance(e["epoch"], int) for e in h.evals)
        run.events()
        run.class_names(10)
        for epoch in run.snapshot_epochs():
            with contextlib.suppress(RunFileError):
                run.load_snapshot(epoch)
        for load in (run.load_eval_inputs, run.load_checkpoint):
            with contextlib.suppress(RunFileError):
                load()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert cli.main(["list", "--out", str(root)]) == 0
        assert cli.main(["list", "--json", "--out", str(root)]) == 0
        for run in runs:
            assert cli.main(["show", run.run_id, "--out", str(root)]) == 0
    assert "Traceback" not in err.getvalue()


@FUZZ
@given(data=st.data())
def test_no_damage_to_a_run_makes_list_show_or_a_reader_raise(base_run, data):
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(shutil.copytree(base_run, Path(tmp) / base_run.name))
        for _ in range(data.draw(st.integers(1, 3))):
            damage_run(data, run)
        read_everything(Path(tmp))


@settings(FUZZ, max_examples=max(EXAMPLES * 3 // 4, 1))
@given(data=st.data())
def test_an_import_of_a_damaged_bundle_is_a_run_or_one_line_refusing_it(base_bundle, data):
    with zipfile.ZipFile(base_bundle) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    names = sorted(members)
    name = data.draw(st.sampled_from(names))
    op = data.draw(st.sampled_from(["content"] * 6 + ["drop", "rename", "add"]))
    if op == "content":
        members[name] = mutate_bytes(data, members[name], name)
    elif op == "drop":
        del members[name]
    elif op == "rename":
        members[data.draw(st.sampled_from([*names, "x/../config.json", "run/notes.txt", "/abs.json"]))] = \
            members.pop(name)
    else:
        members[name.rsplit("/", 1)[0] + "/snapshots/epoch_0009.npz"] = mutate_bytes(data, members[name], name)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle.zip"
        with zipfile.ZipFile(bundle, "w") as zf:
            for member, raw in members.items():
                zf.writestr(member, raw)
        root = Path(tmp) / "models"
        try:
            import_bundle(bundle, root)
        except BundleError as e:
            text = str(e)
            assert "\n" not in text and ".import-" not in text and tmp not in text, text
            assert not any(root.iterdir()), "a refused bundle leaves nothing behind"
            return
        read_everything(root)  # an accepted bundle is a run every reader takes


@pytest.mark.slow
@settings(FUZZ, max_examples=max(EXAMPLES * 3 // 8, 1),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_damage_to_the_runs_makes_the_compare_page_raise(tiny_store, data):
    from page_runs import clear_caches
    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as tmp:
        copies = [Path(shutil.copytree(p, Path(tmp) / p.name)) for p in tiny_store.values()]
        for _ in range(data.draw(st.integers(1, 3))):
            damage_run(data, data.draw(st.sampled_from(copies)))
        before = os.environ.get("HCL_MODELS_DIR")
        os.environ["HCL_MODELS_DIR"] = tmp
        clear_caches()
        try:
            at = AppTest.from_file(str(PROJECT / "pages" / "compare.py"), default_timeout=90).run()
            assert not at.exception, at.exception
            listed = [str(r.path) for r in list_runs(tmp)[0]]
            if listed:  # every run that is still a run, side by side
                at.multiselect(key="cmp_runs").set_value(listed).run()
                assert not at.exception, at.exception
            assert at.get("file_uploader"), "the import control is always there"
        finally:
            if before is None:
                os.environ.pop("HCL_MODELS_DIR", None)
            else:
                os.environ["HCL_MODELS_DIR"] = before
            clear_caches()
