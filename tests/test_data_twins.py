"""twins: near-twin classes in far-apart groups, hidden by polarity and large nuisance that the views redraw."""

import pytest
import torch

from hcl_core.data import load_dataset, two_views
from hcl_core.data.twins import TWINS_NUISANCE_STD, TWINS_SIGNAL_DIM, twins_means
from hcl_core.evaluate import evaluate_features


def even_signal(x: torch.Tensor) -> torch.Tensor:
    """The signal coordinates' outer product: what an encoder invariant to polarity and nuisance can keep."""
    s = x[:, :TWINS_SIGNAL_DIM]
    return (s[:, :, None] * s[:, None, :]).flatten(1)


def test_twins_are_one_gap_apart_and_groups_far_apart():
    means = twins_means(0.5, 10)
    d = torch.cdist(means, means)
    for g in range(5):
        assert float(d[2 * g, 2 * g + 1]) == pytest.approx(0.5, abs=1e-5), "twins differ by the gap"
    off_pair = d.clone()
    for g in range(5):
        off_pair[2 * g, 2 * g + 1] = off_pair[2 * g + 1, 2 * g] = float("inf")
    off_pair.fill_diagonal_(float("inf"))
    assert float(off_pair.min()) > 0.7, "every other class is much farther than a twin"
    assert torch.allclose(twins_means(0.0, 10)[0], twins_means(0.0, 10)[1]), "gap 0: identical twins"
    odd = twins_means(0.5, 3)
    assert odd.shape == (3, TWINS_SIGNAL_DIM) and float(odd[2].norm()) == pytest.approx(1.0, abs=1e-5)


def test_the_data_set_has_its_shape_names_and_balanced_classes():
    ds = load_dataset("twins")
    assert ds.train_x.shape == (2000, 64) and ds.test_x.shape == (1000, 64)
    assert ds.classes[:4] == ("0a", "0b", "1a", "1b") and ds.augmentation == "twins" and not ds.is_image
    assert torch.bincount(ds.train_y).tolist() == [200] * 10
    nuisance = ds.train_x[:, TWINS_SIGNAL_DIM:]
    assert float(nuisance.std()) == pytest.approx(TWINS_NUISANCE_STD, rel=0.05)
    assert float(nuisance.norm(dim=1).mean()) > 2 * float(ds.train_x[:, :TWINS_SIGNAL_DIM].norm(dim=1).mean())
    small = load_dataset("twins", twins_classes=3, twins_gap=0.2)
    assert small.classes == ("0a", "0b", "1a") and small.num_classes == 3


def test_raw_vectors_are_poor_and_a_polarity_and_nuisance_free_view_of_them_is_good():
    ds = load_dataset("twins")
    raw = evaluate_features(ds.train_x, ds.train_y, ds.test_x, ds.test_y)
    clean = evaluate_features(even_signal(ds.train_x), ds.train_y, even_signal(ds.test_x), ds.test_y)
    assert raw["linear_probe_acc"] < 0.2 and raw["few_shot_probe_acc"] < 0.2 and raw["knn_acc"] < 0.55
    assert clean["linear_probe_acc"] > 0.95 and clean["knn_acc"] > 0.95


def test_the_gap_moves_only_the_means_and_a_small_gap_confuses_the_twins():
    wide, narrow = load_dataset("twins", twins_gap=1.0), load_dataset("twins", twins_gap=0.1)
    assert torch.equal(wide.train_x[:, TWINS_SIGNAL_DIM:], narrow.train_x[:, TWINS_SIGNAL_DIM:])
    assert torch.equal(wide.train_y, narrow.train_y)

    def knn(ds):
        return evaluate_features(even_signal(ds.train_x), ds.train_y, even_signal(ds.test_x), ds.test_y)["knn_acc"]

    assert knn(wide) > 0.95 and knn(narrow) < 0.75, "below the spread, twins are told apart only by chance"


def test_the_views_keep_the_signal_up_to_polarity_and_redraw_the_nuisance():
    x = load_dataset("twins").train_x[:512]
    g = torch.Generator().manual_seed(0)
    v1, v2 = two_views(x, 1.0, g, kind="twins")
    s, d = x[:, :TWINS_SIGNAL_DIM], TWINS_SIGNAL_DIM
    for v in (v1, v2):
        same = (v[:, :d] - s).norm(dim=1) < (v[:, :d] + s).norm(dim=1)
        assert 0.4 < float(same.float().mean()) < 0.6, "a fair coin for the polarity"
        kept = torch.where(same[:, None], v[:, :d], -v[:, :d])
        assert float((kept - s).std()) == pytest.approx(0.05, rel=0.15), "jitter of half the spread"
        n_corr = torch.corrcoef(torch.stack([x[:, d:].flatten(), v[:, d:].flatten()]))[0, 1]
        assert abs(float(n_corr)) < 0.05 and float(v[:, d:].std()) == pytest.approx(TWINS_NUISANCE_STD, rel=0.05)
    half = two_views(x, 0.5, g, kind="twins")[0]
    assert float(torch.corrcoef(torch.stack([x[:, d:].flatten(), half[:, d:].flatten()]))[0, 1]) \
        == pytest.approx(0.5, abs=0.05), "strength 0.5 keeps half the nuisance"


@pytest.mark.parametrize("kwargs", [{"twins_gap": -0.1}, {"twins_gap": 2.5}, {"twins_classes": 1},
                                    {"twins_classes": 41}, {"twins_classes": 2.5}, {"twins_gap": True}])
def test_bad_knobs_are_refused_with_their_range(kwargs):
    (field,) = kwargs
    with pytest.raises(ValueError, match=field):
        load_dataset("twins", **kwargs)
