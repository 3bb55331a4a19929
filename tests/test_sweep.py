"""Sweeps: grid expansion, the summary over seeds, a tiny real sweep through the CLI, bad flags, Ray."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from hcl_core.backends import ResourcePlan, land, plan_resources, run_task, threads_per_worker
from hcl_core.cli import main, sweep_command
from hcl_core.config import RunConfig
from hcl_core.plots.sweep import beta_curve_figure
from hcl_core.store import list_runs, load_run
from hcl_core.sweep import (
    MANIFEST,
    SweepError,
    expand_grid,
    find_sweeps,
    grid_base,
    load_sweep,
    parse_list,
    summarize,
    summary_csv,
    summary_markdown,
)

ALL_LOSSES = ("info_nce", "dcl", "hcl", "supcon", "hard_supcon")


# --------------------------------------------------------------------------------------------
# the grid
# --------------------------------------------------------------------------------------------


def test_grid_runs_losses_without_beta_once_per_seed():
    configs = expand_grid(RunConfig(epochs=3, tau=0.2), ALL_LOSSES, (0.0, 0.5, 1.0, 2.0, 4.0), (0, 1, 2))
    assert len(configs) == 39  # (info_nce, dcl, supcon) x 3 seeds + (hcl, hard_supcon) x 5 betas x 3 seeds
    by_loss = {loss: [c for c in configs if c.loss == loss] for loss in ALL_LOSSES}
    for loss in ("info_nce", "dcl", "supcon"):
        assert [(c.beta, c.seed) for c in by_loss[loss]] == [(0.0, 0), (0.0, 1), (0.0, 2)]
    for loss in ("hcl", "hard_supcon"):
        assert sorted({c.beta for c in by_loss[loss]}) == [0.0, 0.5, 1.0, 2.0, 4.0]
        assert len(by_loss[loss]) == 15
    assert all(c.epochs == 3 and c.tau == 0.2 for c in configs)  # the base config is kept
    assert len({(c.loss, c.beta, c.seed) for c in configs}) == 39


def test_grid_errors_name_the_flag():
    with pytest.raises(SweepError, match="--losses: unknown loss 'nope'"):
        expand_grid(RunConfig(), ("hcl", "nope"), (0.0,), (0,))
    with pytest.raises(SweepError, match="--betas: beta must be between 0 and 20"):
        expand_grid(RunConfig(), ("hcl",), (25.0,), (0,))
    with pytest.raises(SweepError, match="--seeds"):
        expand_grid(RunConfig(), ("hcl",), (1.0,), (-1,))


def test_a_field_the_first_loss_ignores_still_reaches_the_losses_that_read_it():
    """info_nce normalises tau_plus and detach_weights away; hcl after it must still get the user's values."""
    given = {"tau_plus": "0.2", "detach_weights": True, "epochs": "3"}  # flags, as text
    configs = expand_grid(given, ("info_nce", "hcl"), (1.0,), (0,))
    assert [(c.loss, c.tau_plus, c.detach_weights, c.epochs) for c in configs] == [
        ("info_nce", 0.0, False, 3), ("hcl", 0.2, True, 3)]
    base = grid_base(configs)
    assert base["tau_plus"] == 0.2 and base["detach_weights"] is True and "loss" not in base
    command = sweep_command({"losses": ["info_nce", "hcl"], "betas": [1.0], "seeds": [0], "base_config": base})
    assert command.endswith("--seeds 0 --tau-plus 0.2 --detach-weights --epochs 3")
    # a field no loss of the grid reads keeps its default: the command does not carry it
    assert "tau-plus" not in sweep_command({"losses": ["info_nce"], "betas": [0.0], "seeds": [0],
                                            "base_config": grid_base(expand_grid({}, ("info_nce",), (0.0,), (0,)))})


def test_parse_list_keeps_order_and_drops_duplicates():
    assert parse_list(" 1, 0.5,1 ,2", "--betas", float) == (1.0, 0.5, 2.0)
    assert parse_list("0,2.0,2", "--seeds", int) == (0, 2)
    assert parse_list("hcl,info_nce", "--losses", str) == ("hcl", "info_nce")
    for text, kind, message in (("", float, "at least one value"), ("1,x", float, "'x' is not a finite number"),
                                ("1.5", int, "'1.5' is not a whole number"), ("inf", float, "finite")):
        with pytest.raises(SweepError, match=message):
            parse_list(text, "--flag", kind)


def test_resources_per_run_follow_the_backend_and_the_device():
    assert plan_resources("local", workers=2, threads=0) == ResourcePlan(threads=threads_per_worker(2),
                                                                         cpus=threads_per_worker(2), gpus=0.0)
    assert plan_resources("ray") == ResourcePlan(threads=1, cpus=1.0, gpus=0.0)
    assert plan_resources("ray", cpus_per_run="2.5", gpus_per_run="0.25") == ResourcePlan(2, 2.5, 0.25)
    assert plan_resources("ray", threads=4) == ResourcePlan(4, 4.0, 0.0)
    assert plan_resources("ray", devices={"cuda"}) == ResourcePlan(1, 1.0, 1.0)  # a CUDA run asks for a GPU
    for kwargs, message in (
        (dict(backend="local", gpus_per_run="1"), "--gpus-per-run is only used with --backend ray"),
        (dict(backend="local", cpus_per_run="2"), "--cpus-per-run is only used with --backend ray"),
        (dict(backend="ray", cpus_per_run="0"), "--cpus-per-run must be a number > 0"),
        (dict(backend="ray", gpus_per_run="-1"), "--gpus-per-run must be a number >= 0"),
        (dict(backend="ray", gpus_per_run="nan"), "--gpus-per-run must be a number >= 0"),
        (dict(backend="ray", gpus_per_run="1.5"), "above 1 must be a whole number"),
        (dict(backend="ray", gpus_per_run="0", devices={"cuda"}), "--device cuda with --backend ray needs"),
        (dict(backend="spark"), "backend must be one of local, ray"),
    ):
        with pytest.raises(SweepError, match=message):
            plan_resources(**kwargs)


def test_threads_per_worker_never_oversubscribes():
    assert threads_per_worker(1, cores=2) == 2
    assert threads_per_worker(2, cores=2) == 1
    assert threads_per_worker(3, cores=2) == 1  # at least one
    assert threads_per_worker(2, cores=16) == 8


# --------------------------------------------------------------------------------------------
# the summary over seeds, on known numbers
# --------------------------------------------------------------------------------------------


def fake_run(loss: str, beta: float, seed: int, state: str = "finished", **metrics) -> SimpleNamespace:
    return SimpleNamespace(config=RunConfig(loss=loss, beta=beta, seed=seed), state=state, summary=metrics)


def test_summary_mean_and_sample_std_over_seeds():
    runs = [
        fake_run("hcl", 1.0, 0, linear_probe_acc=0.9, knn_acc=0.5),
        fake_run("hcl", 1.0, 1, linear_probe_acc=0.8, knn_acc=0.5),
        fake_run("hcl", 1.0, 2, linear_probe_acc=0.7, knn_acc=0.5),
        fake_run("hcl", 1.0, 3, state="failed", linear_probe_acc=0.1),  # counted, not averaged
        fake_run("hcl", 0.0, 0, linear_probe_acc=0.6),
        fake_run("info_nce", 3.0, 0, linear_probe_acc=0.4),  # beta is ignored by info_nce ...
        fake_run("info_nce", 0.0, 1, linear_probe_acc=0.2),  # ... so these two are one group
    ]
    rows = summarize(runs, metrics=("linear_probe_acc", "knn_acc"))
    assert [(r["loss"], r["beta"]) for r in rows] == [("info_nce", None), ("hcl", 0.0), ("hcl", 1.0)]
    nce, hcl0, hcl1 = rows
    assert hcl1["n"] == 3 and hcl1["failed"] == 1 and hcl1["seeds"] == [0, 1, 2]
    assert hcl1["linear_probe_acc_mean"] == pytest.approx(0.8)
    assert hcl1["linear_probe_acc_std"] == pytest.approx(0.1)  # sample std (ddof = 1)
    assert hcl1["knn_acc_std"] == pytest.approx(0.0)
    assert nce["n"] == 2 and nce["linear_probe_acc_mean"] == pytest.approx(0.3)
    assert nce["linear_probe_acc_std"] == pytest.approx(math.sqrt(0.02))
    assert hcl0["n"] == 1 and math.isnan(hcl0["linear_probe_acc_std"])  # one seed: no spread
    assert math.isnan(hcl0["knn_acc_mean"])  # a metric the runs lack

    text = summary_csv(rows, metrics=("linear_probe_acc", "knn_acc"))
    table = list(csv.DictReader(io.StringIO(text)))
    assert list(table[0]) == ["loss", "beta", "n", "failed", "linear_probe_acc_mean", "linear_probe_acc_std",
                              "knn_acc_mean", "knn_acc_std"]
    assert table[0]["beta"] == "" and table[2]["beta"] == "1.0"
    assert float(table[2]["linear_probe_acc_mean"]) == pytest.approx(0.8)
    assert table[1]["linear_probe_acc_std"] == ""  # NaN is an empty cell

    # a value that is not a finite number is left out of the statistics, like a missing one
    odd = summarize(runs[:3] + [fake_run("hcl", 1.0, 9, linear_probe_acc=math.inf, knn_acc="0.9")],
                    metrics=("linear_probe_acc", "knn_acc"))
    assert odd[0]["n"] == 4 and odd[0]["linear_probe_acc_mean"] == pytest.approx(0.8)
    assert odd[0]["knn_acc_std"] == pytest.approx(0.0)

    md = summary_markdown(rows, metrics=("linear_probe_acc", "knn_acc")).splitlines()
    assert md[0] == "| loss | beta | seeds | linear probe | kNN |"
    assert md[2] == "| UCL / SimCLR (InfoNCE) | – | 2 | 0.300 ± 0.141 | – |"
    assert md[4] == "| HCL (hard negatives) | 1 | 3 (+1 failed) | 0.800 ± 0.100 | 0.500 ± 0.000 |"


def test_summary_adds_a_column_for_any_other_field_that_varies():
    runs = [fake_run("hcl", 1.0, 0, linear_probe_acc=0.5), fake_run("info_nce", 0.0, 0, linear_probe_acc=0.5)]
    runs.append(SimpleNamespace(config=RunConfig(loss="hcl", beta=1.0, tau_plus=0.0), state="finished",
                                summary={"linear_probe_acc": 0.7}))
    rows = summarize(runs, metrics=("linear_probe_acc",))
    assert [(r["loss"], r.get("tau_plus")) for r in rows] == [("info_nce", None), ("hcl", 0.0), ("hcl", 0.1)]
    # tau_plus differs from info_nce's stored value too, but info_nce does not read it: no column for that
    assert "tau_plus" not in summarize(runs[:2])[0]


def test_beta_curve_figure_lines_for_beta_losses_and_bands_for_the_rest():
    runs = [fake_run("hcl", b, s, linear_probe_acc=0.5 + 0.1 * b + 0.01 * s) for b in (0.0, 1.0, 2.0) for s in (0, 1)]
    runs += [fake_run("supcon", 0.0, s, linear_probe_acc=0.6 + 0.02 * s) for s in (0, 1)]
    fig = beta_curve_figure(summarize(runs))
    names = [t.name for t in fig.data]
    assert "HCL (hard negatives)" in names and "SCL / SupCon (no β)" in names
    curve = fig.data[names.index("HCL (hard negatives)")]
    assert list(curve.x) == [0.0, 1.0, 2.0]
    assert list(curve.y) == pytest.approx([0.505, 0.605, 0.705])
    assert list(curve.error_y.array) == pytest.approx([math.sqrt(0.00005)] * 3)
    band = fig.data[names.index("SCL / SupCon (no β)")]
    assert list(band.x) == [0.0, 2.0] and list(band.y) == pytest.approx([0.61, 0.61])
    assert fig.layout.xaxis.title.text == "hardness β"
    with pytest.raises(ValueError, match="no column 'nope_mean'"):
        beta_curve_figure(summarize(runs), "nope")


# --------------------------------------------------------------------------------------------
# a tiny real sweep through the CLI
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory) -> dict:
    """info_nce (no beta) and hard_supcon at beta 0 and 1, seeds 0 and 1, 2 epochs: 6 real runs."""
    out = tmp_path_factory.mktemp("sweeps")
    capture = pytest.MonkeyPatch()
    buf_out, buf_err = io.StringIO(), io.StringIO()
    capture.setattr("sys.stdout", buf_out)
    capture.setattr("sys.stderr", buf_err)
    try:
        rc = main(["sweep", "--losses", "info_nce,hard_supcon", "--betas", "0,1", "--seeds", "0,1",
                   "--epochs", "2", "--snapshot-every", "1", "--workers", "1", "--out", str(out),
                   "--sweep-name", "tiny"])
    finally:
        capture.undo()
    return {"rc": rc, "out": out, "folder": out / "tiny", "stdout": buf_out.getvalue(), "stderr": buf_err.getvalue()}


def test_tiny_sweep_writes_runs_summary_and_json(tiny_sweep):
    assert tiny_sweep["rc"] == 0, tiny_sweep["stderr"]
    folder: Path = tiny_sweep["folder"]
    last = json.loads(tiny_sweep["stdout"].strip().splitlines()[-1])
    assert last["runs"] == 6 and last["finished"] == 6 and last["failed"] == 0
    assert Path(last["summary"]) == folder / "summary.csv" and last["seconds"] > 0
    # the store lists the runs one level down, under the sweep folder
    runs, warnings = list_runs(tiny_sweep["out"])
    assert len(runs) == 6 and not warnings
    assert all(r.state == "finished" and r.path.parent == folder for r in runs)
    assert sorted((r.config.loss, r.config.beta, r.config.seed) for r in runs) == sorted(
        [("info_nce", 0.0, 0), ("info_nce", 0.0, 1)] + [("hard_supcon", b, s) for b in (0.0, 1.0) for s in (0, 1)])
    assert all(r.config.epochs == 2 and r.config.threads >= 1 for r in runs)
    # CSV: one row per (loss, beta), numbers equal to the runs' own summaries
    table = list(csv.DictReader(io.StringIO((folder / "summary.csv").read_text(encoding="utf-8"))))
    assert [(t["loss"], t["beta"], t["n"]) for t in table] == [
        ("info_nce", "", "2"), ("hard_supcon", "0.0", "2"), ("hard_supcon", "1.0", "2")]
    accs = [r.summary["knn_acc"] for r in runs if r.config.loss == "hard_supcon" and r.config.beta == 1.0]
    assert float(table[2]["knn_acc_mean"]) == pytest.approx(sum(accs) / 2)
    assert float(table[2]["knn_acc_std"]) == pytest.approx(abs(accs[0] - accs[1]) / math.sqrt(2))
    # Markdown, also printed before the JSON line
    md = (folder / "summary.md").read_text(encoding="utf-8")
    assert md.splitlines()[0].startswith("| loss | beta | seeds | linear probe | kNN | few-shot probe |")
    assert len(md.splitlines()) == 2 + 3 and md in tiny_sweep["stdout"]
    # the progress on stderr counts runs
    assert "[6/6]" in tiny_sweep["stderr"] and "sweep of 6 runs" in tiny_sweep["stderr"]
    # the manifest: grid, command, one record per run
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["state"] == "finished" and manifest["total"] == 6 and len(manifest["runs"]) == 6
    assert manifest["command"] == sweep_command(manifest)
    assert "--losses info_nce,hard_supcon --betas 0,1 --seeds 0,1 --epochs 2 --snapshot-every 1" in manifest["command"]


def test_load_sweep_matches_the_csv(tiny_sweep):
    runs, rows = load_sweep(tiny_sweep["folder"])
    assert len(runs) == 6
    assert summary_csv(rows) == (tiny_sweep["folder"] / "summary.csv").read_text(encoding="utf-8")
    assert find_sweeps(tiny_sweep["out"]) == [tiny_sweep["folder"]]
    with pytest.raises(SweepError, match="not a folder"):
        load_sweep(tiny_sweep["out"] / "missing")


@pytest.fixture
def app_env(monkeypatch):
    """Fresh caches, and ``__main__`` restored afterwards (AppTest replaces it for good, which
    would break a later multiprocessing "spawn" in this pytest process)."""
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    st.cache_data.clear()
    yield monkeypatch
    st.cache_data.clear()


def test_sweep_view_shows_table_figure_and_csv(tiny_sweep, app_env):
    app_env.setenv("HCL_MODELS_DIR", str(tiny_sweep["out"]))

    def page():
        from ui.sweep_view import render_sweep_section

        render_sweep_section()

    at = AppTest.from_function(page, default_timeout=60).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="sweep_view_folder").value.endswith("tiny")
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == 3
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t.get("name") for t in spec["data"]} >= {"H-SCL (hard supervised)", "UCL / SimCLR (InfoNCE) (no β)"}
    assert [b.label for b in at.get("download_button")] == ["⬇ PNG", "⬇ SVG", "Download summary (CSV)"]
    at.radio(key="sweep_view_metric").set_value("knn_acc").run()
    assert not at.exception
    assert "kNN" in json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["yaxis"]["title"]["text"]


def test_sweep_view_without_sweeps_says_how_to_start_one(tmp_path, app_env):
    app_env.setenv("HCL_MODELS_DIR", str(tmp_path))

    def page():
        from ui.sweep_view import render_sweep_section

        render_sweep_section()

    at = AppTest.from_function(page, default_timeout=30).run()
    assert not at.exception
    assert "No sweeps yet" in at.info[0].value and "python -m hcl_core sweep" in at.info[0].value


# --------------------------------------------------------------------------------------------
# bad flags: one line, exit 2
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, message", [
    (["--losses", "nope,info_nce"], "--losses: unknown loss 'nope'"),
    (["--betas", "0,x"], "'x' is not a finite number"),
    (["--betas", "25"], "beta must be between 0 and 20"),
    (["--seeds", "1.5"], "not a whole number"),
    (["--tau", "-1"], "tau must be between"),
    (["--workers", "0"], "must be a whole number >= 1"),
    (["--backend", "spark"], "invalid choice"),
    (["--address", "auto"], "--address is only used with --backend ray"),
    (["--loss", "hcl"], "unrecognized arguments"),  # loss/beta/seed come from --losses/--betas/--seeds
    (["--sweep-name", "../up"], "--sweep-name"),
    (["--gpus-per-run", "1"], "--gpus-per-run is only used with --backend ray"),
    (["--backend", "ray", "--gpus-per-run", "x"], "--gpus-per-run must be a number >= 0"),
    (["--backend", "ray", "--device", "cuda", "--gpus-per-run", "0"], "needs --gpus-per-run > 0"),
    (["--retries", "-1"], "must be a whole number >= 0"),
])
def test_bad_flags_exit_2_with_one_line(flags, message, tmp_path, capsys):
    try:
        rc = main(["sweep", "--out", str(tmp_path), "--epochs", "1", *flags])
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing was started


def test_a_used_sweep_folder_is_refused(tmp_path, capsys):
    (tmp_path / "s" / "run").mkdir(parents=True)
    assert main(["sweep", "--out", str(tmp_path), "--sweep-name", "s", "--epochs", "1"]) == 2
    assert "already exists" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# the cluster path: a run shipped back as a bundle, and Ray itself
# --------------------------------------------------------------------------------------------


def test_a_task_that_cannot_see_the_folder_ships_the_run_back(tmp_path):
    """What a Ray task on another node does: train elsewhere, return a bundle; the driver imports it."""
    folder = tmp_path / "sweep"
    folder.mkdir()
    config = RunConfig(loss="hcl", beta=1.0, epochs=1, threads=1).to_dict()
    result = run_task(config, str(tmp_path / "not-on-this-node"), marker="abc123")
    assert result["state"] == "finished" and isinstance(result["bundle"], bytes)
    assert not (tmp_path / "not-on-this-node").exists()
    landed = land(result, folder)
    assert "bundle" not in landed
    run = load_run(landed["run_dir"])
    assert run.path.parent == folder and run.config.loss == "hcl" and run.snapshot_epochs() == [0, 1]
    assert run.summary["knn_acc"] == pytest.approx(result["summary"]["knn_acc"])


def test_a_crashing_task_is_recorded_not_raised(tmp_path):
    result = run_task({"loss": "hcl", "epochs": 1, "nonsense": 1}, str(tmp_path))
    assert result["state"] == "failed" and "nonsense" in result["message"]


@pytest.mark.slow
def test_two_local_worker_processes(tmp_path, monkeypatch, capsys):
    """The default backend with two spawned workers (one torch thread each on two cores)."""
    import types

    # A clean __main__: earlier AppTests in this process may have left a page script there,
    # which "spawn" would re-run in each worker.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    rc = main(["sweep", "--losses", "info_nce,hard_supcon", "--betas", "1", "--seeds", "0", "--epochs", "1",
               "--workers", "2", "--out", str(tmp_path), "--sweep-name", "w"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "2 worker(s) x" in captured.err and json.loads(captured.out.strip().splitlines()[-1])["finished"] == 2
    runs, _ = load_sweep(tmp_path / "w")
    assert sorted(r.config.loss for r in runs) == ["hard_supcon", "info_nce"]
    assert all(r.state == "finished" and r.config.threads == threads_per_worker(2) for r in runs)


@pytest.mark.slow
def test_ray_backend_on_a_local_two_cpu_ray(tmp_path, monkeypatch, capsys):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rc = main(["sweep", "--backend", "ray", "--losses", "info_nce,hcl", "--betas", "0,1", "--seeds", "0",
                   "--epochs", "1", "--out", str(tmp_path), "--sweep-name", "r", "--quiet"])
        assert ray.is_initialized()  # the caller's Ray is left running
    finally:
        ray.shutdown()
    assert rc == 0, capsys.readouterr().err
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["runs"] == 3 and last["failed"] == 0
    runs, rows = load_sweep(tmp_path / "r")
    assert len(runs) == 3 and all(r.state == "finished" for r in runs)
    assert [(r["loss"], r["beta"]) for r in rows] == [("info_nce", None), ("hcl", 0.0), ("hcl", 1.0)]
    manifest = json.loads((tmp_path / "r" / MANIFEST).read_text())
    assert manifest["backend"] == "ray" and all(rec["state"] == "finished" for rec in manifest["runs"])
    assert os.path.isfile(tmp_path / "r" / "summary.md")
