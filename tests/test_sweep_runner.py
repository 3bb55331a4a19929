"""Sweeps launched from the app: the command they run, a real tiny sweep, and a stop that keeps what finished."""

from __future__ import annotations

import json
import time

import pytest

from hcl_core.cli import build_parser
from hcl_core.config import RunConfig
from hcl_core.sweep_runner import SweepRunner, sweep_arguments


def test_the_arguments_are_the_command_a_user_would_type_and_keep_the_base_config():
    base = RunConfig(loss="info_nce", tau=0.2, tau_plus=0.3, epochs=3, max_train=200, detach_weights=True)
    args = sweep_arguments(base, losses=["hcl", "supcon"], betas=[0, 2.5], seeds=[0, 1], out="/tmp/x", name="s1")
    parsed = build_parser().parse_args(["sweep", *args])
    assert parsed.losses == "hcl,supcon" and parsed.betas == "0,2.5" and parsed.seeds == "0,1"
    given = {k: getattr(parsed, k) for k in ("tau", "tau_plus", "epochs", "max_train", "detach_weights")}
    assert RunConfig(loss="hcl", **given) == base.replace(loss="hcl")
    assert parsed.sweep_name == "s1" and parsed.quiet


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(losses=["simclr"]), "not 'simclr'"),
    (dict(seeds=[]), "at least one seed"),
    (dict(betas=[]), "at least one β"),
    (dict(name="../up"), "sweep name"),
])
def test_a_bad_grid_is_refused_with_a_sentence(kwargs, message):
    grid = dict(losses=["hcl"], betas=[1.0], seeds=[0], out="/tmp/x", name="ok")
    with pytest.raises(ValueError, match=message):
        sweep_arguments(RunConfig(), **{**grid, **kwargs})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_sweep_started_from_the_app_finishes_and_a_stopped_one_keeps_its_finished_runs(tmp_path):
    runner = SweepRunner(tmp_path)
    tiny = RunConfig(epochs=1, max_train=200, eval_size=50, snapshot_every=1, batch_size=64)
    done = runner.start(tiny, losses=["info_nce", "hcl"], betas=[1.0], seeds=[0], name="tiny", workers=2)
    with pytest.raises(ValueError, match="already running"):
        runner.start(tiny, losses=["hcl"], betas=[1.0], seeds=[0], name="tiny")
    done.proc.wait(240)
    assert done.returncode == 0, done.log
    manifest = json.loads((tmp_path / "tiny" / "sweep.json").read_text())
    assert manifest["state"] == "finished" and len(manifest["runs"]) == 2
    assert (tmp_path / "tiny" / "summary.csv").exists()

    long = RunConfig(epochs=300, max_train=200, eval_size=50, snapshot_every=100, batch_size=64)
    stopped = runner.start(long, losses=["info_nce"], betas=[0.0], seeds=[0, 1, 2], name="long", workers=1)
    deadline = time.monotonic() + 120
    while not any((tmp_path / "long").glob("*/metrics.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.2)
    runner.stop("long")
    assert not stopped.active
    manifest = json.loads((tmp_path / "long" / "sweep.json").read_text())
    assert manifest["state"] == "interrupted"
