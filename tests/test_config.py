"""RunConfig validation, serialisation and URL round trips."""

import pytest

from hcl_core.config import FIELDS, ConfigError, RunConfig


def test_defaults_are_valid_and_round_trip_through_json():
    c = RunConfig()
    assert RunConfig.from_json(c.to_json()) == c


@pytest.mark.parametrize(
    "field, value",
    [("tau", -0.5), ("tau", 0.0), ("beta", -1), ("tau_plus", 1.0), ("batch_size", 2), ("epochs", 0),
     ("lr", float("nan")), ("loss", "nope"), ("dataset", "imagenet"), ("seed", 1.5), ("detach_weights", "maybe")],
)
def test_out_of_range_fields_name_the_field_and_the_range(field, value):
    with pytest.raises(ConfigError) as e:
        RunConfig(**{field: value})
    assert e.value.field == field
    assert field in str(e.value)
    spec = FIELDS[field]
    assert spec.describe_range().split()[0] in str(e.value)


def test_strings_are_coerced_like_the_cli_and_url_give_them():
    c = RunConfig(tau="0.2", epochs="3", detach_weights="true", max_train="none")
    assert (c.tau, c.epochs, c.detach_weights, c.max_train) == (0.2, 3, True, None)


def test_local_data_sets_need_a_root():
    with pytest.raises(ConfigError) as e:
        RunConfig(dataset="mnist")
    assert e.value.field == "data_root"
    assert RunConfig(dataset="mnist", data_root="/data").data_root == "/data"


def test_synthetic_needs_the_mlp():
    with pytest.raises(ConfigError, match="mlp"):
        RunConfig(dataset="synthetic", encoder="cnn")


def test_query_round_trip_and_lenient_fallback():
    c = RunConfig(loss="hard_supcon", beta=2.0, tau=0.2, seed=3, detach_weights=True)
    q = c.to_query()
    assert set(q) == {"loss", "beta", "tau", "seed", "detach_weights"}
    back, notices = RunConfig.from_query(q)
    assert back == c and notices == []
    bad, notices = RunConfig.from_query({"tau": "-1", "beta": "2", "unknown": "x", "epochs": ["5", "7"]})
    assert bad.tau == RunConfig().tau and bad.beta == 2.0 and bad.epochs == 7
    assert len(notices) == 1 and "tau" in notices[0]


def test_a_config_normalises_the_parameters_its_loss_does_not_read():
    a = RunConfig(loss="info_nce", beta=3.0, tau_plus=0.3, detach_weights=True)
    b = RunConfig(loss="info_nce", beta=0.0, tau_plus=0.0)
    assert a == b and (a.beta, a.tau_plus, a.detach_weights) == (0.0, 0.0, False)
    assert RunConfig(loss="hcl", beta=3.0) != RunConfig(loss="hcl", beta=0.0)
    assert RunConfig(loss="h_ucl", tau_plus=0.3, detach_weights=True).tau_plus == 0.0
    assert RunConfig(loss="hard_supcon", detach_weights=True).detach_weights
    assert "beta" not in RunConfig(loss="supcon", beta=2.0).to_query()
    assert RunConfig(loss="hcl", beta=0.5, tau_plus=0.1).short_name() == "hcl-b0.5-t0.5-tp0.1-s0"


def test_switching_the_loss_of_a_normalised_config_keeps_the_users_values():
    simclr = RunConfig(loss="info_nce", beta=3.0, tau_plus=0.2, detach_weights=True)
    assert (simclr.beta, simclr.tau_plus) == (0.0, 0.0)
    hcl = simclr.replace(loss="hcl")
    assert (hcl.beta, hcl.tau_plus, hcl.detach_weights) == (3.0, 0.2, True)
    assert simclr.replace(loss="hcl", beta=1.0).beta == 1.0  # an explicit change wins
    assert simclr.given("beta") == 3.0 and simclr.given("tau") == 0.5
    assert "_unread" not in simclr.to_dict() and RunConfig.from_dict(simclr.to_dict()) == simclr
    assert hash(simclr) == hash(RunConfig(loss="info_nce"))
