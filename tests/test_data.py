"""load_dataset itself (registry, argument checks, errors, cache) and the data sets that need no files."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hcl_core import data, registry
from hcl_core.data import DATASETS, DataNotFoundError, Dataset, load_dataset
from hcl_core.data.idx import MNIST_FILES
from hcl_core.data.loading import _LOADERS

# --------------------------------------------------------------------------------------------
# Registry, errors, caching
# --------------------------------------------------------------------------------------------


def test_every_registry_record_has_exactly_one_loader_and_the_package_is_ui_free():
    assert DATASETS is registry.DATASETS, "data.DATASETS is the registry's table, not a copy"
    assert set(_LOADERS) == set(registry.DATASETS)
    assert not DATASETS["digits"].needs_root and not DATASETS["synthetic"].is_image
    assert all(DATASETS[n].needs_root for n in ("mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder",
                                                "npz"))
    assert not DATASETS["mnist1d"].needs_root and not DATASETS["twins"].needs_root
    for module in Path(data.__file__).parent.glob("*.py"):
        assert "streamlit" not in module.read_text(), module.name
        assert len(module.read_text().splitlines()) < 600, f"{module.name} is one concern under 600 lines"


def test_a_loaded_data_set_matches_its_registry_record():
    for name in ("digits", "synthetic", "twins"):
        ds, spec = load_dataset(name), DATASETS[name]
        assert ds.input_shape == spec.input_shape and ds.is_image == spec.is_image
        assert ds.classes == spec.class_names or spec.class_names is None
        assert ds.augmentation == (spec.augmentation or ("image" if spec.is_image else "vector"))


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown data set 'imagenet'") as e:
        load_dataset("imagenet")
    assert all(name in str(e.value) for name in DATASETS)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder"])
def test_file_based_sets_need_a_root_and_say_which_need_none(name):
    with pytest.raises(ValueError, match="pass root"):
        load_dataset(name)


@pytest.mark.parametrize("kwargs", [{"max_train": 0}, {"max_test": -3}, {"max_train": 2.5},
                                    {"synthetic_overlap": 1.5}, {"image_size": 2}, {"twins_gap": -1},
                                    {"twins_classes": 100}])
def test_bad_parameters_are_refused_whichever_data_set_is_asked_for(kwargs):
    name = "synthetic" if "synthetic_overlap" in kwargs else "digits"
    with pytest.raises(ValueError):
        load_dataset(name, **kwargs)


@pytest.mark.parametrize(("name", "expected"), [
    ("mnist", [*MNIST_FILES, os.path.join("MNIST", "raw")]),
    ("fashion_mnist", [*MNIST_FILES, os.path.join("FashionMNIST", "raw")]),
    ("cifar10", ["data_batch_1", "data_batch_5", "test_batch", "batches.meta", "cifar-10-batches-py"]),
    ("cifar100", ["train", "test", "meta", "cifar-100-python"]),
])
def test_missing_files_say_what_to_put_where(tmp_path, name, expected):
    with pytest.raises(DataNotFoundError) as e:
        load_dataset(name, tmp_path)
    message = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    assert str(tmp_path) in message and "network" in message
    for part in expected:
        assert part in message, part
    assert message.count(". ") == 0, "one sentence"


def test_a_root_that_does_not_exist_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_dataset("mnist", missing)


def test_a_dataset_checks_its_tensors_dtypes_shapes_and_labels():
    x, y = torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.int64)
    ds = Dataset("t", x, y, x, y, ("a", "b"), True)
    assert ds.num_classes == 2 and ds.input_shape == (1, 8, 8)
    with pytest.raises(ValueError, match="int64"):
        Dataset("t", x, y.int(), x, y, ("a",), True)
    with pytest.raises(ValueError, match="labels must lie"):
        Dataset("t", x, y + 5, x, y, ("a", "b"), True)
    with pytest.raises(ValueError, match="4 dims"):
        Dataset("t", x.flatten(1), y, x.flatten(1), y, ("a",), True)
    signals = Dataset("s", x.flatten(2), y, x.flatten(2), y, ("a",), False)
    assert signals.augmentation == "signal" and signals.input_shape == (1, 64)
    assert Dataset("v", x.flatten(1), y, x.flatten(1), y, ("a",), False).augmentation == "vector"
    with pytest.raises(ValueError, match="does not fit is_image"):
        Dataset("t", x, y, x, y, ("a",), True, "twins")
    with pytest.raises(ValueError, match="signals 3"):
        Dataset("t", x.flatten(1), y, x.flatten(1), y, ("a",), False, "signal")


# --------------------------------------------------------------------------------------------
# digits and synthetic
# --------------------------------------------------------------------------------------------


def test_digits_has_a_fixed_stratified_split_independent_of_any_seed():
    ds = load_dataset("digits")
    assert ds.is_image and ds.classes == tuple("0123456789")
    assert ds.train_x.shape == (1437, 1, 8, 8) and ds.test_x.shape == (360, 1, 8, 8)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    assert float(ds.train_x.min()) >= 0.0 and float(ds.train_x.max()) == 1.0
    train_counts, test_counts = torch.bincount(ds.train_y), torch.bincount(ds.test_y)
    share = test_counts.float() / (train_counts + test_counts).float()
    assert torch.all((share - 0.2).abs() < 0.01), "stratified: 20 % of every class is held out"
    # The split never depends on a run's seed: reseed everything, drop the cache, reload.
    first_test_y = ds.test_y.clone()
    torch.manual_seed(99)
    np.random.seed(99)
    data.clear_cache()
    again = load_dataset("digits")
    assert again is not ds and torch.equal(again.test_y, first_test_y) and torch.equal(again.train_x, ds.train_x)
    # Pinned, so a change of split (which would make old runs incomparable) fails loudly.
    assert ds.test_y[:12].tolist() == [1, 4, 8, 6, 5, 9, 9, 1, 3, 2, 2, 2]


def test_loads_are_cached_and_subsets_are_stratified_and_deterministic():
    assert load_dataset("digits") is load_dataset("digits")
    sub = load_dataset("digits", max_train=500, max_test=100)
    assert sub.train_x.shape == (500, 1, 8, 8) and sub.test_x.shape == (100, 1, 8, 8)
    assert torch.bincount(sub.test_y).tolist() == [10] * 10
    assert (torch.bincount(sub.train_y, minlength=10) - 50).abs().max() <= 2
    data.clear_cache()
    again = load_dataset("digits", max_train=500, max_test=100)
    assert torch.equal(again.train_y, sub.train_y) and torch.equal(again.test_x, sub.test_x)
    assert len(load_dataset("digits", max_train=10**6).train_y) == 1437


def nearest_mean_accuracy(ds: Dataset) -> float:
    means = torch.stack([ds.train_x[ds.train_y == k].mean(0) for k in range(ds.num_classes)])
    return float(((ds.test_x @ means.T).argmax(1) == ds.test_y).float().mean())


def test_synthetic_overlap_controls_how_separable_the_classes_are():
    ds = load_dataset("synthetic")
    assert not ds.is_image and ds.input_shape == (32,) and ds.num_classes == 10
    assert ds.train_x.shape == (2000, 32) and ds.test_x.shape == (500, 32)
    assert torch.allclose(ds.train_x.norm(dim=1), torch.ones(2000), atol=1e-5)
    assert torch.bincount(ds.train_y).tolist() == [200] * 10 and torch.bincount(ds.test_y).tolist() == [50] * 10
    accuracy = [nearest_mean_accuracy(load_dataset("synthetic", synthetic_overlap=o)) for o in (0.0, 0.5, 1.0)]
    assert accuracy[0] > 0.99 and accuracy[0] > accuracy[1] + 0.1 > accuracy[2] + 0.2
    assert accuracy[2] > 0.15, "still above chance (0.1) at full overlap"
    assert torch.equal(load_dataset("synthetic", "/ignored/root").train_y, ds.train_y)
