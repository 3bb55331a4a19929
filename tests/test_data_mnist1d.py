"""MNIST-1D: generated offline by the mnist1d package's own procedure, then cached as plain arrays."""

import random
import socket

import numpy as np
import pytest
import torch

from hcl_core.data import DataNotFoundError, clear_cache, load_dataset, mnist_1d


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private, empty cache folder and an empty in-process cache."""
    monkeypatch.setenv("HCL_DATA_CACHE", str(tmp_path / "cache"))
    clear_cache()
    yield tmp_path / "cache"
    clear_cache()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.slow
def test_generation_is_the_packages_own_procedure_with_its_defaults_and_never_touches_the_network(no_network):
    from mnist1d.data import get_dataset_args, make_dataset

    np.random.seed(123)
    random.seed(123)
    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    ours = mnist_1d.generate_mnist1d()
    assert np.array_equal(np.random.get_state()[1], np_before) and random.getstate() == py_before, \
        "the caller's random streams are left as they were"
    theirs = make_dataset(get_dataset_args())
    assert ours["x_train"].shape == (4000, 40) and ours["x_test"].shape == (1000, 40)
    assert ours["x_train"].dtype == np.float32 and ours["y_train"].dtype == np.int64
    np.testing.assert_array_equal(ours["x_train"], theirs["x"].astype(np.float32))
    np.testing.assert_array_equal(ours["y_test"], theirs["y_test"])
    # Standardised as a whole, ten classes of about 400 training signals each.
    x = np.concatenate([ours["x_train"], ours["x_test"]])
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1.0) < 1e-4
    assert np.bincount(ours["y_train"]).min() > 350


def test_load_dataset_caches_the_generated_arrays_and_reads_them_back_without_the_package(cache, monkeypatch):
    ds = load_dataset("mnist1d")
    assert ds.train_x.shape == (4000, 1, 40) and ds.test_x.shape == (1000, 1, 40)
    assert ds.classes == tuple("0123456789") and not ds.is_image and ds.augmentation == "signal"
    files = list(cache.glob("mnist1d-*.npz"))
    assert len(files) == 1 and not list(cache.glob(".*tmp")), "one cache file, written atomically"
    with np.load(files[0], allow_pickle=False) as z:
        assert sorted(z.files) == ["x_test", "x_train", "y_test", "y_train"]

    def must_not_generate():
        raise AssertionError("generated again although the cache holds the arrays")

    monkeypatch.setattr(mnist_1d, "generate_mnist1d", must_not_generate)
    clear_cache()
    again = load_dataset("mnist1d")
    assert again is not ds and torch.equal(again.train_x, ds.train_x) and torch.equal(again.test_y, ds.test_y)


def test_a_damaged_cache_file_is_generated_again(cache):
    path = mnist_1d._cache_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 not really a zip")
    ds = load_dataset("mnist1d")
    assert ds.train_x.shape == (4000, 1, 40)
    with np.load(path, allow_pickle=False) as z:
        assert z["x_train"].shape == (4000, 40), "the damaged file was replaced"


@pytest.mark.slow
def test_logistic_regression_on_the_raw_signals_matches_the_papers_32_percent(cache):
    from sklearn.linear_model import LogisticRegression

    ds = load_dataset("mnist1d")
    model = LogisticRegression(max_iter=1000).fit(ds.train_x.flatten(1).numpy(), ds.train_y.numpy())
    accuracy = model.score(ds.test_x.flatten(1).numpy(), ds.test_y.numpy())
    assert 0.28 < accuracy < 0.37, accuracy  # Greydanus & Kobak: about 32 %; 0.329 here


def test_a_missing_package_says_how_to_install_it(cache, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "mnist1d.data", None)  # import fails
    with pytest.raises(DataNotFoundError, match="pip install mnist1d"):
        load_dataset("mnist1d")
