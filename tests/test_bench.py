"""bench/: the baselines compute what they claim (the naive losses ours, the floor Z Zᵀ and its
gradient, the floor app the real app's controls), the bookkeeping is right, the GPU mode's parts
run (on the CPU here) and its fallback says why, and the benchmark's JSON line has every figure."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from bench import gpu, gpu_train, interactions, loss_floor, loss_speed, rerun_profile
from bench.floor_app import FLOOR_RUNS, app_pages, write_floor_app
from bench.naive import NAIVE, naive_hard_supcon, naive_hcl, naive_supcon, negative_mask
from bench.run import verdicts
from bench.timing import interleaved, median, ratio
from bench.train_speed import summarise
from hcl_core import losses
from hcl_core.registry import LOSSES

ROOT = Path(__file__).resolve().parents[1]
TOL = {"rtol": 1e-5, "atol": 1e-5}
PARAMS = [(0.5, 1.0, 0.1), (0.2, 3.0, 0.0), (1.0, 0.0, 0.3), (0.1, 0.5, 0.05)]


def _inputs(n: int, d: int, dtype, seed: int = 0, classes: int = 5):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=dtype)
    z2 = torch.randn(n, d, generator=g, dtype=dtype)
    labels = torch.randint(0, classes, (n,), generator=g)
    return z1, z2, labels


@pytest.mark.parametrize("tau,beta,tau_plus", PARAMS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n", [4, 33, 128])
def test_naive_losses_agree_with_ours(n, dtype, tau, beta, tau_plus):
    z1, z2, labels = _inputs(n, 16, dtype)
    pairs = [
        (losses.hcl(z1, z2, tau=tau, beta=beta, tau_plus=tau_plus),
         naive_hcl(z1, z2, tau=tau, beta=beta, tau_plus=tau_plus)),
        (losses.supcon(z1, z2, labels, tau=tau), naive_supcon(z1, z2, labels, tau=tau)),
        (losses.hard_supcon(z1, z2, labels, tau=tau, beta=beta),
         naive_hard_supcon(z1, z2, labels, tau=tau, beta=beta)),
    ]
    for ours, naive in pairs:
        assert torch.isfinite(naive)
        torch.testing.assert_close(ours, naive, **TOL)


@pytest.mark.parametrize("name", loss_speed.LOSS_NAMES)
def test_naive_gradients_agree_with_ours(name):
    z1, z2, labels = _inputs(24, 8, torch.float64, seed=3)
    grads = []
    for fn in (getattr(losses, name), NAIVE[name]):
        a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        loss_speed.call(fn, name, a, b, labels, loss_speed.TIMING_PARAMS).backward()
        grads.append((a.grad, b.grad))
    torch.testing.assert_close(grads[0], grads[1], **TOL)


def test_negative_mask_is_hcl_get_negative_mask():
    n = 5
    expected = torch.ones((n, 2 * n), dtype=torch.bool)
    for i in range(n):  # the HCL repository's loop
        expected[i, i] = False
        expected[i, i + n] = False
    expected = torch.cat((expected, expected), 0)
    assert torch.equal(negative_mask(n), expected)


def test_overflow_check_naive_overflows_ours_does_not():
    for name in ("hcl", "hard_supcon"):
        finite = loss_speed.overflow_check(name, 64, d=32)
        assert finite == {"ours": True, "naive": False}, name
    # SupContrast subtracts the row max itself: both finite
    assert loss_speed.overflow_check("supcon", 64, d=32) == {"ours": True, "naive": True}


def test_loss_run_and_summary_shape():
    results = loss_speed.run((8,), d=4, reps=2, warmup=0)
    assert set(results) == {f"{name}/N=8" for name in loss_speed.LOSS_NAMES}
    s = loss_speed.summary(results)
    assert set(s["loss_ratio_vs_naive"]) == set(loss_speed.LOSS_NAMES)
    assert s["loss_ratio_vs_naive_max"] == max(r["ratio"] for r in results.values())
    assert s["loss_ours_always_finite"] is True


def test_interleaved_alternates_and_records_every_repetition():
    calls = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, reps=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert [len(v) for v in times.values()] == [3, 3]
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert ratio(1.0, 2.0) == 0.5


def test_summarise_skips_the_first_epoch_and_weights_by_time():
    events = [{"type": "start", "steps_per_epoch": 10}]
    events += [{"type": "step", "step": i, "elapsed": 0.5 + i} for i in range(1, 31)]
    events += [{"type": "epoch", "epoch": 1, "steps_per_s": 1.0},  # pays one-time costs: skipped
               {"type": "epoch", "epoch": 2, "steps_per_s": 100.0},
               {"type": "epoch", "epoch": 3, "steps_per_s": 50.0}]
    s = summarise(events)
    # 20 steps in 0.1 s + 0.2 s
    assert s["steps_per_s"] == pytest.approx(20 / 0.3)
    assert s["epochs_measured"] == 2
    assert s["epoch_seconds_median"] == pytest.approx(0.15)
    assert s["first_step_after_start_s"] == 1.5


def test_verdicts():
    v = verdicts({"loss_ratio_vs_naive_max": 0.9, "train_throughput_ratio_app_vs_bare": 0.5})
    assert v["loss_ratio_vs_naive_max"].startswith("pass")
    assert v["train_throughput_ratio_app_vs_bare"].startswith("FAIL")
    assert v["first_update_seconds"] == "not measured"


# --------------------------------------------------------------------------------------------
# the loss against its matmul floor, and its peak memory
# --------------------------------------------------------------------------------------------


def test_the_floor_is_the_similarity_product_and_its_gradient():
    z1, z2, _ = loss_floor.inputs(6, 3, dtype=torch.float64)
    step = loss_floor.floor_step(z1, z2, seed=4)
    grad = step()
    z = torch.cat([z1, z2]).detach()
    g = torch.randn(12, 12, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(grad, (g + g.T) @ z)  # d<G, Z Z^T>/dZ = G Z + G^T Z


def test_loss_floor_run_and_summary_cover_every_registered_loss():
    results = loss_floor.run((8, 16), d=4, reps=1, warmup=0)
    assert set(results) == {f"{name}/N={n}" for name in LOSSES for n in (8, 16)}
    assert all(r["loss_ms"] > 0 and r["floor_ms"] > 0 and r["ratio"] > 0 for r in results.values())
    s = loss_floor.summary(results)
    assert set(s["loss_ratio_vs_matmul_floor"]) == set(LOSSES)
    assert set(s["loss_ratio_vs_matmul_floor"]["hcl"]) == {"8", "16"}
    assert s["loss_ratio_vs_matmul_floor_max"] == max(r["ratio"] for r in results.values())


def test_peak_memory_sees_the_similarity_matrix_of_the_floor_and_more_for_a_loss():
    floor = loss_floor.peak_memory("matmul_floor", 1024, threads=1)
    assert floor["matrix_bytes"] == 2048 * 2048 * 4
    # S = Z Z^T is one (2N)^2 matrix, alive until the backward pass has used it
    assert 0.9 <= floor["peak_extra_matrices"] <= 3.0, floor
    hcl = loss_floor.peak_memory("hcl", 1024, threads=1)
    assert hcl["peak_extra_matrices"] > floor["peak_extra_matrices"], (hcl, floor)


# --------------------------------------------------------------------------------------------
# the interaction benchmark's pure parts: the floor app, the summary, the rerun profile
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def floor_app(tmp_path_factory):
    dest = tmp_path_factory.mktemp("floor")
    return dest, write_floor_app(dest, epochs=[0, 5, 10])


def test_the_floor_app_has_the_apps_navigation(floor_app):
    dest, pages = floor_app
    real = (Path(__file__).resolve().parents[1] / "app.py").read_text()
    assert pages == app_pages(real) == app_pages((dest / "app.py").read_text())
    assert len(pages) == 5
    assert (dest / ".streamlit" / "config.toml").read_text() == (
        Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text()
    for path, _ in pages:
        compile((dest / path).read_text(), path, "exec")


def _floor_page(dest: Path, stem: str) -> AppTest:
    at = AppTest.from_file(str(dest / "pages" / f"{stem}.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def _chart(at: AppTest, i: int = 0) -> dict:
    return json.loads(at.get("plotly_chart")[i].proto.spec)


def test_the_floor_pages_offer_the_benchmarks_controls(floor_app):
    dest, _ = floor_app
    at = _floor_page(dest, "negatives")
    assert at.slider[0].label.startswith("Preview β") and at.slider[0].value == 1.0
    at.slider[0].set_value(1.1).run()
    assert _chart(at)["layout"]["title"]["text"] == "β = 1.1"

    at = _floor_page(dest, "embeddings")
    assert at.select_slider[0].label == "Epoch" and list(at.select_slider[0].options) == ["0", "5", "10"]
    spec = _chart(at)
    assert len(spec["frames"]) == 3 and spec["layout"]["updatemenus"][0]["buttons"][0]["label"] == "▶ Play"
    at.select_slider[0].set_value(5).run()
    assert "epoch 5" in _chart(at)["layout"]["title"]["text"]

    at = _floor_page(dest, "compare")
    assert len(_chart(at)["data"]) == 3
    at.multiselect[0].set_value(list(FLOOR_RUNS)).run()
    assert len(_chart(at)["data"]) == 4

    at = _floor_page(dest, "train")
    assert not at.get("html")
    at.button[0].click().run()
    assert 'data-chart="Training loss" data-points="2"' in at.get("html")[0].proto.body
    assert at.button[0].disabled and not at.button[1].disabled
    at.button[1].click().run()
    assert "stopped by the user" in at.warning[0].value and not at.button[0].disabled


def test_interaction_summary_is_the_ratio_of_medians():
    app = interactions.Side("app", None, None, [("pages/train.py", "Train"), ("pages/negatives.py", "Negatives")])
    floor = interactions.Side("floor", None, None, app.pages)
    for a, f in ((1.0, 0.2), (3.0, 0.3), (2.0, 0.5)):
        app.record("switch_to_negatives", a)
        floor.record("switch_to_negatives", f)
    s = interactions.summary(app, floor)
    assert s["interaction_ratio_vs_empty_page"] == {"switch_to_negatives": pytest.approx(2.0 / 0.3, rel=1e-3)}
    assert s["interaction_worst"] == "switch_to_negatives"
    assert s["interaction_seconds"]["switch_to_negatives"]["app_all"] == [1.0, 3.0, 2.0]
    assert interactions.page_of(app, "switch_to_negatives") == "negatives"
    assert interactions.page_of(app, "preview_beta_step") == "negatives"
    assert interactions.page_of(app, "stop_to_stopped") == "train"


@pytest.mark.usefixtures("streamlit_caches")
def test_rerun_profile_says_where_the_negatives_page_spends_its_time(tiny_models):
    out = rerun_profile.profile_page("negatives")
    rerun, step = out["rerun"], out["interaction"]
    assert out["cold_seconds"] > 0 and rerun["seconds"] > 0
    assert len(rerun["charts"]) == 2 and rerun["chart_bytes"] == sum(c["bytes"] for c in rerun["charts"]) > 1000
    assert all(c["points"] > 0 for c in rerun["charts"])
    assert [c["kind"] for c in rerun["charts"]] == ["markup", "markup"]  # light charts until Interactive charts
    assert step["name"] == "preview_beta_step" and 0 < step["script_seconds"] <= step["seconds"]
    assert step["own_seconds_by_package"].get("plotly", 0) > 0  # the figures are built in the script thread
    assert any("pages/negatives.py" in f["function"] for f in step["slowest"])


def test_rerun_profile_refuses_a_missing_models_folder_instead_of_profiling_pages_without_runs(tmp_path, capsys):
    assert rerun_profile.main(["compare", str(tmp_path / "gone")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "gone does not exist" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------
# the GPU mode: its CPU fallback, and its parts on the CPU
# --------------------------------------------------------------------------------------------


def _bench(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=str(ROOT), capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_gpu_mode_without_cuda_says_so_in_one_line_and_exits_2():
    proc = _bench("--gpu", env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.strip() == gpu.NO_CUDA and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_gpu_training_parts_run_on_the_cpu(tmp_path):
    gpu_train.fake_cifar10(tmp_path / "data", n_train=300, n_test=100)
    config = gpu_train.cifar_config(tmp_path / "data", device="cpu", epochs=1, batch_size=64, encoder="mlp",
                                    hidden_dim=32, feature_dim=16, eval_size=50, threads=1)
    ours = gpu_train.ours(config, tmp_path / "models")
    assert ours["device"] == "cpu" and ours["steps_per_epoch"] == 4 and ours["steps_per_s"] > 0
    bare = gpu_train.bare_loop(config, steps=3, record=True)
    assert bare["steps"] == 3 and len(bare["losses"]) == 3 and all(math.isfinite(v) for v in bare["losses"])
    low = gpu_train.bare_loop(config, steps=2, autocast=torch.bfloat16, loss_in_fp32=True, record=True)
    assert all(math.isfinite(v) for v in low["losses"])
    values = gpu_train.autocast_loss_values(config, batches=1)
    assert set(values) == set(LOSSES)
    assert all(math.isfinite(v["float32"]) and v["rel_diff_autocast"] < 0.1 for v in values.values()), values
    # the loss in float32 on bf16 outputs: only the encoder's rounding remains
    assert all(v["rel_diff_encoder_autocast_loss_fp32"] < 0.05 for v in values.values())
    moved = gpu_train.transfers(config, reps=1)
    assert moved["bytes"] == 300 * 3 * 32 * 32 * 4 and moved["epoch_resident_s"] > 0


# --------------------------------------------------------------------------------------------
# the whole benchmark, reduced: the JSON line has every figure the issue asks for
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(900)
def test_the_benchmark_prints_the_loss_memory_and_training_ratios_in_its_json_line():
    """The reduced benchmark end to end, but for the interactions (the next test)."""
    proc = _bench("--smoke", "--only", "losses", "floor", "memory", "app", timeout=800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    train_ratio = out["train_throughput_ratio_app_vs_bare"]
    assert isinstance(train_ratio, float) and train_ratio > 0
    floor = out["loss_ratio_vs_matmul_floor"]
    assert set(floor) == set(LOSSES) and all(v["64"] > 0 for v in floor.values())
    assert set(out["loss_peak_memory_matrices"]) == {"matmul_floor", *LOSSES}
    assert set(out["targets"]) >= {"interaction_ratio_vs_empty_page_max", "train_throughput_ratio_app_vs_bare",
                                   "loss_peak_memory_matrices_max"}


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(900)
def test_the_interaction_benchmark_measures_every_interaction_against_the_empty_page():
    """Chromium against the app and an empty app, one repetition: every interaction, Play included
    (which stalled once when it started one epoch before the end), gets a ratio."""
    proc = _bench("--smoke", "--only", "interactions", timeout=800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    ratios = out["interaction_ratio_vs_empty_page"]
    pages = ("embeddings", "negatives", "compare", "theory", "train")
    expected = {"first_open", "epoch_step", "play_frame", "preview_beta_step", "compare_four_runs",
                "start_to_first_point", "stop_to_stopped", *(f"switch_to_{p}" for p in pages)}
    assert set(ratios) >= expected, sorted(ratios)
    assert all(isinstance(v, float) and v > 0 for v in ratios.values()), ratios
    assert out["interaction_ratio_vs_empty_page_max"] == max(ratios.values())
