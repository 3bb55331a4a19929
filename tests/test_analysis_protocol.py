"""The protocol measurements (hcl_core.protocol): view fidelity, kNN temperature, batch norm, linear protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from page_runs import tiny_runs

from hcl_core.config import RunConfig
from hcl_core.encoders import build_encoder, embed_views
from hcl_core.evaluate import knn_accuracy
from hcl_core.protocol import checks, linear, views
from hcl_core.store import load_run


@pytest.fixture(scope="module")
def hcl_run():
    return load_run(tiny_runs()["hcl"])


def test_view_fidelity_at_strength_0_is_the_clean_accuracy_and_falls_with_strength():
    r = views.view_fidelity("synthetic", strengths=(1.5, 0.0, 0.75), steps=150, draws=2, seed=1)
    assert r.strengths.tolist() == [0.0, 0.75, 1.5] and r.classifier == "mlp" and r.test_size == 500
    assert r.accuracy[0] == pytest.approx(r.clean_accuracy) and r.std[0] == 0
    assert r.accuracy[0] > r.accuracy[-1] and np.all((r.accuracy >= 0) & (r.accuracy <= 1))
    again = views.view_fidelity("synthetic", strengths=(0.0, 0.75, 1.5), steps=150, draws=2, seed=1)
    assert np.array_equal(again.accuracy, r.accuracy)  # seeded: the same numbers


def test_the_proposed_strength_is_the_largest_that_keeps_the_threshold():
    def result(acc, clean=1.0):
        return views.ViewFidelity("digits", "cnn", clean, np.array([0.0, 0.25, 0.5, 1.0]), np.array(acc),
                                  np.zeros(4), 5, 360, 0.95, 1.0)

    assert result([1.0, 0.97, 0.95, 0.80]).proposed == 0.5
    assert result([1.0, 0.94, 0.96, 0.80]).proposed == 0.5  # the largest, not the first run of passes
    assert result([0.90, 0.80, 0.70, 0.60]).proposed == 0.0
    # relative to the judge's clean accuracy: 0.76 of 0.8 is 95 %
    overlapping = result([0.8, 0.78, 0.76, 0.70], clean=0.8)
    assert overlapping.retained.tolist() == pytest.approx([1.0, 0.975, 0.95, 0.875])
    assert overlapping.proposed == 0.5 and overlapping.to_dict()["proposed"] == 0.5


@pytest.mark.parametrize("kwargs, message", [({"strengths": (0.5, 3.0)}, "strengths"), ({"draws": 0}, "draws"),
                                             ({"threshold": 1.5}, "threshold")])
def test_view_fidelity_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        views.view_fidelity("synthetic", **kwargs)


def test_the_command_prints_a_table_and_one_json_line(capsys):
    from hcl_core.cli import main

    assert main(["views", "--dataset", "synthetic", "--strengths", "0,1", "--steps", "50", "--draws", "2"]) == 0
    out, err = capsys.readouterr()
    line = json.loads(out.strip().splitlines()[-1])
    assert line["dataset"] == "synthetic" and line["strengths"] == [0.0, 1.0] and "proposed" in line
    assert "strength 1.00" in err and "proposed strength" in err
    assert main(["views", "--dataset", "synthetic", "--strengths", "0,5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: strengths must be") and err.count("\n") == 1


def test_knn_at_the_training_loop_temperature_reproduces_the_run_summary(hcl_run):
    temps = checks.knn_temperatures(hcl_run, (0.1, 0.5))
    assert sorted(temps) == [0.1, 0.5]  # the run's τ (0.5) is one of them
    assert temps[0.5] == pytest.approx(hcl_run.summary["knn_acc"])  # same split, same features, same votes
    xtr, ytr, xte, yte = checks.run_features(hcl_run)
    assert temps[0.1] == knn_accuracy(xtr, ytr, xte, yte, temperature=0.1)


def test_embedding_the_views_in_one_or_two_passes():
    torch.manual_seed(0)
    model = build_encoder("mlp", (1, 8, 8))
    x1, x2 = torch.rand(16, 1, 8, 8), torch.rand(16, 1, 8, 8)
    model.train()
    one, two = embed_views(model, x1, x2, separate=False), embed_views(model, x1, x2, separate=True)
    joint = model(torch.cat([x1, x2]))
    assert torch.equal(one[0], joint[:16]) and torch.equal(one[1], joint[16:])
    assert torch.equal(two[0], model(x1)) and not torch.allclose(one[0], two[0])  # batch norm statistics differ
    model.eval()
    one, two = embed_views(model, x1, x2, separate=False), embed_views(model, x1, x2, separate=True)
    torch.testing.assert_close(one[0], two[0])  # running statistics: the same either way


def test_view_pass_comparison_trains_both_ways(tmp_path):
    config = RunConfig(loss="info_nce", epochs=1, snapshot_every=1, max_train=200, eval_size=100, threads=1)
    rows = checks.view_pass_comparison([config], [0], tmp_path)
    assert [(r["passes"], r["seed"], r["loss"]) for r in rows] == [(2, 0, "info_nce"), (1, 0, "info_nce")]
    assert all(0 <= r["knn_acc"] <= 1 for r in rows)
    assert len(list((tmp_path / "2-pass").iterdir())) == 1 and len(list((tmp_path / "1-pass").iterdir())) == 1


def test_linear_protocol_trains_a_linear_layer_on_frozen_features(hcl_run):
    calls = []
    r = linear.linear_protocol(hcl_run, epochs=6, batch_size=64, progress=lambda e, loss: calls.append((e, loss)))
    assert [e for e, _ in calls] == list(range(1, 7)) and all(np.isfinite(loss) for _, loss in calls)
    assert [e for e, _ in r.test_curve] == [5, 6] and r.accuracy == r.test_curve[-1][1]
    assert calls[-1][1] < calls[0][1]  # it learns (24 Adam steps on 200 samples: far from converged)
    assert 0.15 < r.accuracy <= 1 and r.aug_strength == hcl_run.config.aug_strength  # chance is 0.1
    assert (r.epochs, r.lr, r.weight_decay, r.batch_size) == (6, 1e-3, 1e-6, 64)
    with pytest.raises(ValueError, match="epochs"):
        linear.linear_protocol(hcl_run, epochs=0)
