"""Comparison presets and the differences the Train page flags."""

from __future__ import annotations

import pytest

from hcl_core.comparisons import PRESETS, comparison_configs, differences
from hcl_core.config import RunConfig


def test_a_preset_becomes_one_config_per_row_on_the_same_data_and_seed():
    base = RunConfig(loss="supcon", beta=2.0, tau_plus=0.2, seed=3, epochs=7)
    configs = comparison_configs(base, PRESETS["SimCLR vs HCL (β 1 and 4) vs H-SCL"].rows)
    assert [(c.loss, c.beta) for c in configs] == [("info_nce", 0.0), ("hcl", 1.0), ("hcl", 4.0),
                                                   ("hard_supcon", 1.0)]
    assert {(c.seed, c.epochs, c.dataset) for c in configs} == {(3, 7, "digits")}
    assert configs[1].tau_plus == 0.2  # the controls' τ⁺ survives a base whose loss does not read it
    four = comparison_configs(base, PRESETS["Four losses"].rows)
    assert [c.beta for c in four] == [0.0, 2.0, 0.0, 2.0]  # the base's β where the row gives none


def test_duplicate_rows_train_once_and_unknown_losses_are_named():
    base = RunConfig()
    assert len(comparison_configs(base, [("hcl", 1.0), ("hcl", 1.0), ("info_nce", 5.0), ("info_nce", 0.0)])) == 2
    with pytest.raises(ValueError, match="unknown loss 'simclr'"):
        comparison_configs(base, [("simclr", None)])


def test_differences_name_what_changes_the_run_and_skip_what_does_not():
    shown = RunConfig(loss="hard_supcon", beta=1.0, epochs=10)
    assert differences(shown, shown.replace(name="x", threads=2)) == []
    diff = dict((k, (a, b)) for k, a, b in differences(shown, RunConfig(loss="hcl", beta=1.0, epochs=30)))
    assert diff == {"loss": ("hard_supcon", "hcl"), "epochs": (10, 30)}  # τ⁺: H-SCL does not read it
    assert differences(RunConfig(beta=1.0), RunConfig(beta=4.0)) == [("beta", 1.0, 4.0)]
