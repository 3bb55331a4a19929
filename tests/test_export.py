"""Taking a run away: load_encoder, the safetensors file, the projector's TSV files, the npz, the export command."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import hcl_core
from hcl_core.config import RunConfig
from hcl_core.encoders import ContrastiveModel, build_encoder
from hcl_core.export import ExportError
from hcl_core.export.arrays import METADATA_COLUMNS
from hcl_core.export.encoder import FORMAT
from hcl_core.registry import DATASETS
from hcl_core.store import RunFileError, load_npz, load_run
from hcl_core.train import train

TINY = {"dataset": "digits", "epochs": 2, "batch_size": 64, "max_train": 200, "eval_size": 60, "hidden_dim": 32,
        "feature_dim": 16, "snapshot_every": 1, "threads": 1, "device": "cpu"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two tiny trained runs in one models folder: an MLP (HCL) and a CNN (H-SCL, supervised)."""
    root = tmp_path_factory.mktemp("models")
    mlp = train(RunConfig(**TINY, encoder="mlp", loss="hcl", name="tiny-mlp"), root=root)
    cnn = train(RunConfig(**{**TINY, "epochs": 1}, encoder="cnn", loss="hard_supcon", name="tiny-cnn"), root=root)
    assert mlp.state == cnn.state == "finished"
    return {"mlp": mlp.run_dir, "cnn": cnn.run_dir}


def _eval_inputs(run_dir: Path) -> torch.Tensor:
    return torch.from_numpy(load_npz(run_dir / "eval_inputs.npz")["inputs"].astype(np.float32))


def _last_snapshot(run_dir: Path) -> dict[str, np.ndarray]:
    run = load_run(run_dir)
    return run.load_snapshot(run.snapshot_epochs()[-1])


# --------------------------------------------------------------------------------------------
# load_encoder
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_load_encoder_gives_the_backbone_that_computed_the_runs_stored_features(runs, kind):
    encoder = hcl_core.load_encoder(runs[kind])
    assert not isinstance(encoder, ContrastiveModel), "head=False gives the backbone alone"
    assert not any(m.training for m in encoder.modules()), "not in eval mode"
    assert all(p.device.type == "cpu" for p in encoder.parameters())
    with torch.no_grad():
        features = encoder(_eval_inputs(runs[kind])).numpy()
    stored = _last_snapshot(runs[kind])["features"]
    assert features.shape == stored.shape
    np.testing.assert_allclose(features, stored, rtol=1e-5, atol=1e-5)


def test_load_encoder_takes_a_folder_an_id_prefix_or_a_run_and_head_gives_the_projections(runs):
    root = runs["mlp"].parent
    x = _eval_inputs(runs["mlp"])[:20]
    by_path = hcl_core.load_encoder(str(runs["mlp"]))
    # Both runs may start in the same second, so the prefix keeps what tells them apart.
    by_prefix = hcl_core.load_encoder(runs["mlp"].name[:-1], root=root)
    by_run = hcl_core.load_encoder(load_run(runs["mlp"]))
    with torch.no_grad():
        assert torch.equal(by_path(x), by_prefix(x)) and torch.equal(by_path(x), by_run(x))
        full = hcl_core.load_encoder(runs["mlp"], head=True)
        assert isinstance(full, ContrastiveModel) and not full.training
        z = full(x)
    assert z.shape == (20, TINY["feature_dim"])
    assert torch.equal(full.backbone(x), by_path(x))
    with pytest.raises(RunFileError, match="no run matching 'nothing-like-this'"):
        hcl_core.load_encoder("nothing-like-this", root=root)


def test_a_run_without_a_checkpoint_or_with_a_foreign_one_is_refused(runs, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(runs["mlp"], broken)
    (broken / "checkpoint.pt").unlink()
    with pytest.raises(RunFileError, match="checkpoint.pt is missing"):
        hcl_core.load_encoder(broken)
    state = torch.load(runs["mlp"] / "checkpoint.pt", weights_only=True)
    state["model"]["backbone.1.weight"] = torch.zeros(5, 5)
    torch.save(state, broken / "checkpoint.pt")
    with pytest.raises(ExportError, match=r"backbone.1.weight has shape \(5, 5\), the architecture needs \(32, 64\)"):
        hcl_core.load_encoder(broken)


# --------------------------------------------------------------------------------------------
# the safetensors file
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_the_safetensors_file_loads_into_a_fresh_model_with_identical_features(runs, kind, tmp_path):
    dest = hcl_core.export_safetensors(runs[kind], tmp_path / "enc.safetensors")
    sidecar = json.loads((tmp_path / "enc.json").read_text())
    config = load_run(runs[kind]).config
    assert sidecar["format"] == FORMAT and sidecar["config"] == config.to_dict()
    assert sidecar["architecture"]["encoder"] == kind
    assert sidecar["architecture"]["input_shape"] == list(DATASETS["digits"].input_shape)
    assert sidecar["epoch"] == load_run(runs[kind]).snapshot_epochs()[-1]
    assert sidecar["class_names"] == list(DATASETS["digits"].class_names)

    x = _eval_inputs(runs[kind])
    with torch.no_grad():
        from_run = hcl_core.load_encoder(runs[kind], head=True)
        from_file = hcl_core.load_encoder(dest, head=True)
        assert torch.equal(from_file(x), from_run(x))
        assert torch.equal(hcl_core.load_encoder(str(dest))(x), from_run.backbone(x))
        # What a user without our loader does: the architecture from the JSON, the weights from the file.
        arch = sidecar["architecture"]
        fresh = build_encoder(arch["encoder"], tuple(arch["input_shape"]), hidden_dim=arch["hidden_dim"],
                              out_dim=arch["out_dim"])
        fresh.load_state_dict(load_file(dest))
        fresh.eval()
        assert torch.equal(fresh(x), from_run(x))
        assert torch.equal(fresh.backbone(x), from_run.backbone(x))
    info = hcl_core.encoder_info(dest)
    assert info.config == config and info.architecture == arch and info.run_id == runs[kind].name


def test_export_safetensors_never_overwrites_and_wants_the_suffix(runs, tmp_path):
    dest = hcl_core.export_safetensors(runs["mlp"], tmp_path / "a.safetensors")
    before = dest.read_bytes()
    with pytest.raises(ExportError, match="already exists"):
        hcl_core.export_safetensors(runs["mlp"], dest)
    (tmp_path / "b.json").write_text("{}")
    with pytest.raises(ExportError, match=r"b.json already exists"):
        hcl_core.export_safetensors(runs["mlp"], tmp_path / "b.safetensors")
    with pytest.raises(ExportError, match=r"must name a .safetensors file"):
        hcl_core.export_safetensors(runs["mlp"], tmp_path / "c.pt")
    assert dest.read_bytes() == before and not (tmp_path / "b.safetensors").exists()


def _tampered(src: Path, dest: Path, *, tensors=None, metadata=None) -> Path:
    from safetensors import safe_open

    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    if tensors:
        state.update(tensors)
    if metadata:
        meta.update(metadata)
    save_file(state, str(dest), metadata=meta)
    return dest


def test_a_foreign_or_damaged_encoder_file_is_refused_before_any_weight_is_built(runs, tmp_path):
    good = hcl_core.export_safetensors(runs["mlp"], tmp_path / "good.safetensors")
    with pytest.raises(ExportError, match="missing.safetensors does not exist"):
        hcl_core.load_encoder(tmp_path / "missing.safetensors")
    (tmp_path / "noise.safetensors").write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(ExportError, match="could not be read as a safetensors file"):
        hcl_core.load_encoder(tmp_path / "noise.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ExportError, match="not an encoder written by hcl_core"):
        hcl_core.load_encoder(tmp_path / "foreign.safetensors")
    cases = {
        "shape": ({"head.2.weight": torch.zeros(3, 3)}, None, r"head.2.weight has shape \(3, 3\)"),
        "extra": ({"evil": torch.zeros(1)}, None, r"unexpected \['evil'\]"),
        "nan": ({"head.2.bias": torch.full((16,), float("nan"))}, None, "NaN or infinite"),
        "huge": (None, {"architecture": json.dumps({"encoder": "mlp", "input_shape": [100000, 100000, 3],
                                                    "hidden_dim": 32, "out_dim": 16, "feature_size": 32})},
                 "input_shape must be"),
        "disagree": (None, {"architecture": json.dumps({"encoder": "cnn", "input_shape": [1, 8, 8], "hidden_dim": 32,
                                                        "out_dim": 16, "feature_size": 128})},
                     "the architecture's encoder 'cnn' disagrees with the config's 'mlp'"),
        "config": (None, {"config": '{"tau": -1}'}, "corrupt metadata"),
        "version": (None, {"format_version": "99"}, "format version '99'"),
    }
    for name, (tensors, metadata, message) in cases.items():
        path = _tampered(good, tmp_path / f"{name}.safetensors", tensors=tensors, metadata=metadata)
        with pytest.raises(ExportError, match=message):
            hcl_core.load_encoder(path)


# --------------------------------------------------------------------------------------------
# embeddings: projector and npz
# --------------------------------------------------------------------------------------------


def test_the_projector_files_have_one_row_per_sample_and_the_three_metadata_columns(runs, tmp_path):
    folder = hcl_core.export_projector(runs["mlp"], tmp_path / "proj")
    snap = _last_snapshot(runs["mlp"])
    lines = (folder / "tensors.tsv").read_text().splitlines()
    assert len(lines) == TINY["eval_size"]
    rows = np.array([[float(v) for v in line.split("\t")] for line in lines], dtype=np.float32)  # no header
    assert rows.shape == (TINY["eval_size"], TINY["hidden_dim"])
    assert np.array_equal(rows, snap["features"]), "the TSV must hold the snapshot's features exactly"
    meta = (folder / "metadata.tsv").read_text().splitlines()
    assert meta[0].split("\t") == list(METADATA_COLUMNS) == ["label", "class_name", "split"]
    assert len(meta) == len(lines) + 1
    cells = [m.split("\t") for m in meta[1:]]
    assert all(len(c) == 3 for c in cells)
    assert [int(c[0]) for c in cells] == snap["labels"].tolist()
    assert all(c[1] == DATASETS["digits"].class_names[int(c[0])] for c in cells)
    assert {c[2] for c in cells} == {"test"}


def test_tensorboards_projector_plugin_serves_the_exported_files(runs, tmp_path):
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin
    from werkzeug.test import Client

    folder = hcl_core.export_projector(runs["cnn"], tmp_path / "proj", epoch=0)
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(folder))
    context = base_plugin.TBContext(logdir=str(folder), multiplexer=mux,
                                    data_provider=data_provider.MultiplexerDataProvider(mux, str(folder)))
    apps = ProjectorPlugin(context).get_plugin_apps()

    def get(route: str, **query) -> bytes:
        response = Client(apps[route]).get(route, query_string=query)
        assert response.status_code == 200, response.data
        return response.data

    info = json.loads(get("/info", run="."))
    (embedding,) = info["embeddings"]
    assert embedding["tensorShape"] == [TINY["eval_size"], 128]  # the CNN's feature size
    served = np.frombuffer(get("/tensor", run=".", name=embedding["tensorName"]), dtype=np.float32)
    run = load_run(runs["cnn"])
    assert np.array_equal(served.reshape(TINY["eval_size"], 128), run.load_snapshot(0)["features"])
    metadata = get("/metadata", run=".", name=embedding["tensorName"]).decode().splitlines()
    assert metadata[0] == "label\tclass_name\tsplit" and len(metadata) == TINY["eval_size"] + 1


def test_the_npz_holds_one_snapshot_readable_without_pickle(runs, tmp_path):
    path = hcl_core.export_npz(runs["mlp"], tmp_path / "emb.npz", epoch=1)
    with np.load(path, allow_pickle=False) as z:
        got = {k: z[k] for k in z.files}
    run = load_run(runs["mlp"])
    snap = run.load_snapshot(1)
    assert np.array_equal(got["features"], snap["features"]) and got["features"].dtype == np.float32
    assert np.array_equal(got["labels"], snap["labels"])
    assert got["class_names"].tolist() == list(DATASETS["digits"].class_names)
    assert np.array_equal(got["test_index"], run.load_eval_inputs()["indices"])
    assert int(got["epoch"]) == 1 and str(got["split"]) == "test" and str(got["run_id"]) == run.run_id
    assert RunConfig.from_json(str(got["config"])) == run.config
    with pytest.raises(RunFileError, match="no snapshot at epoch 9; it has epochs 0, 1, 2"):
        hcl_core.export_npz(runs["mlp"], tmp_path / "other.npz", epoch=9)


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


def _export(*argv: str) -> int:
    """``python -m hcl_core export ARGV`` in this process, through the command line's own error handling."""
    from hcl_core.cli import main

    return main(["export", *argv])


def test_the_export_command_writes_each_format_and_the_bundle_stays_the_default(runs, tmp_path, capsys):
    root = str(runs["mlp"].parent)
    run_id = runs["mlp"].name
    assert _export(run_id, "--out", root, "--to", str(tmp_path / "run.zip")) == 0
    with zipfile.ZipFile(tmp_path / "run.zip") as z:
        assert any(n.endswith("/config.json") for n in z.namelist())
    assert _export(run_id, "--out", root, "--format", "safetensors", "--to", str(tmp_path / "e.safetensors")) == 0
    assert _export(run_id, "--out", root, "--format", "projector", "--to", str(tmp_path / "p"), "--epoch", "1") == 0
    assert _export(run_id, "--out", root, "--format", "npz", "--to", str(tmp_path / "e.npz")) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / n) for n in ("run.zip", "e.safetensors", "p", "e.npz")]
    assert len((tmp_path / "p" / "tensors.tsv").read_text().splitlines()) == TINY["eval_size"]


@pytest.mark.parametrize(("argv", "message"), [
    (("--format", "bundle", "--epoch", "1", "--to", "x.zip"), "--epoch picks a snapshot for --format projector"),
    (("--format", "npz", "--epoch", "5", "--to", "x.npz"), "has no snapshot at epoch 5"),
    (("--format", "npz", "--to", "x.csv"), "must name a .npz file"),
    (("--format", "safetensors", "--to", "taken.safetensors"), "already exists"),
])
def test_bad_export_requests_are_one_line_and_exit_code_2(runs, tmp_path, capsys, argv, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken.safetensors").write_bytes(b"x")
    assert _export(str(runs["mlp"]), *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.safetensors"]
