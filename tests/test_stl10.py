"""STL-10 from its binary files (column-major 96x96x3 images, labels 1..10), its unlabelled split,
the training pool that mixes both, and the random resized crops that shrink 96-px images.

The files are written here in the release's exact format, smaller (a few dozen images).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hcl_core.config import RunConfig
from hcl_core.data import DataFormatError, DataNotFoundError, load_dataset
from hcl_core.data.crops import random_resized_crop
from hcl_core.data.progress import reporting_to
from hcl_core.data.stl10 import IMAGE_BYTES, STL10_CLASSES, resize_uint8
from hcl_core.data.unlabeled import TrainingPool, has_unlabeled, load_unlabeled
from hcl_core.registry import DATASETS


def column_major(images: np.ndarray) -> bytes:
    """(n, 3, 96, 96) as (C, H, W) -> the release's bytes: each channel stored column by column."""
    return np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes()


def make_stl10(root: Path, n_train: int = 20, n_test: int = 10, n_unlabeled: int = 7, seed: int = 0) -> dict:
    d = root / "stl10_binary"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "train_X": rng.integers(0, 256, (n_train, 3, 96, 96), dtype=np.uint8),
        "train_y": (np.arange(n_train) % 10 + 1).astype(np.uint8),
        "test_X": rng.integers(0, 256, (n_test, 3, 96, 96), dtype=np.uint8),
        "test_y": ((np.arange(n_test) * 3) % 10 + 1).astype(np.uint8),
        "unlabeled_X": rng.integers(0, 256, (n_unlabeled, 3, 96, 96), dtype=np.uint8),
    }
    for name, a in arrays.items():
        (d / f"{name}.bin").write_bytes(column_major(a) if a.ndim == 4 else a.tobytes())
    (d / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")
    (d / "fold_indices.txt").write_text("0 1 2\n")
    return arrays


def test_stl10_reads_column_major_images_at_96_px_with_labels_from_1_to_10_as_0_to_9(tmp_path):
    arrays = make_stl10(tmp_path)
    raw = (tmp_path / "stl10_binary" / "train_X.bin").read_bytes()
    ds = load_dataset("stl10", tmp_path, image_size=96)
    assert ds.train_x.shape == (20, 3, 96, 96) and ds.test_x.shape == (10, 3, 96, 96)
    assert ds.train_x.dtype == torch.float32 and ds.classes == STL10_CLASSES == DATASETS["stl10"].class_names
    assert ds.train_y.tolist() == (arrays["train_y"].astype(int) - 1).tolist()
    assert ds.test_y.tolist() == (arrays["test_y"].astype(int) - 1).tolist()
    # Image 2, green channel, row 5, column 70: byte 2*27648 + 1*9216 + 70*96 + 5 of the file.
    assert float(ds.train_x[2, 1, 5, 70]) == pytest.approx(raw[2 * IMAGE_BYTES + 9216 + 70 * 96 + 5] / 255)
    assert torch.equal((ds.test_x * 255).round().to(torch.uint8), torch.from_numpy(arrays["test_X"]))


def test_stl10_resizes_for_the_cpu_with_an_antialiased_filter(tmp_path):
    make_stl10(tmp_path)
    d = tmp_path / "stl10_binary"
    half = np.zeros((10, 3, 96, 96), np.uint8)
    half[:, :, :, 48:] = 255  # left half black, right half white
    (d / "test_X.bin").write_bytes(column_major(half))
    ds = load_dataset("stl10", tmp_path, image_size=32)
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_x.shape == (10, 3, 32, 32)
    assert float(ds.test_x[:, :, :, :15].max()) == 0.0 and float(ds.test_x[:, :, :, 17:].min()) == 1.0
    assert load_dataset("stl10", tmp_path, image_size=48).test_x.shape == (10, 3, 48, 48)
    # A box of 3x3 pixels of one value stays that value: the filter preserves flat regions exactly.
    flat = torch.full((1, 3, 96, 96), 77, dtype=torch.uint8)
    assert torch.equal(resize_uint8(flat, 32), torch.full((1, 3, 32, 32), 77, dtype=torch.uint8))


def test_the_unlabelled_images_stay_uint8_and_match_the_labelled_splits_resizing(tmp_path):
    arrays = make_stl10(tmp_path, n_unlabeled=9)
    assert has_unlabeled("stl10") and not has_unlabeled("cifar10")
    seen = []
    with reporting_to(seen.append):
        unl = load_unlabeled("stl10", tmp_path, image_size=32)
    assert unl.dtype == torch.uint8 and unl.shape == (9, 3, 32, 32)
    assert torch.equal(unl, resize_uint8(torch.from_numpy(arrays["unlabeled_X"]), 32))
    assert seen[-1].finished and seen[-1].done == 9 and seen[-1].unit == "image"
    assert load_unlabeled("stl10", tmp_path, image_size=96, limit=4).shape == (4, 3, 96, 96)
    with pytest.raises(ValueError, match="no unlabelled images"):
        load_unlabeled("cifar10", tmp_path)


def test_the_training_pool_serves_labelled_then_unlabelled_images_as_float_batches(tmp_path):
    make_stl10(tmp_path, n_train=20, n_unlabeled=7)
    ds = load_dataset("stl10", tmp_path, image_size=32)
    pool = TrainingPool(ds.train_x, load_unlabeled("stl10", tmp_path, image_size=32))
    assert len(pool) == 27
    idx = torch.tensor([26, 0, 21, 19])
    batch = pool.batch(idx)
    assert batch.dtype == torch.float32 and batch.shape == (4, 3, 32, 32)
    assert torch.equal(batch[1], ds.train_x[0]) and torch.equal(batch[3], ds.train_x[19])
    assert torch.equal(batch[0], pool.unlabeled[6].float() / 255)
    assert torch.equal(batch[2], pool.unlabeled[1].float() / 255)
    with pytest.raises(ValueError, match="same image_size"):
        TrainingPool(ds.train_x, load_unlabeled("stl10", tmp_path, image_size=96))
    with pytest.raises(IndexError):
        TrainingPool(ds.train_x).batch(torch.tensor([25]))


def test_missing_or_damaged_stl10_files_are_one_line_naming_them(tmp_path):
    with pytest.raises(DataNotFoundError, match="stl10_binary") as e:
        load_dataset("stl10", tmp_path)
    assert "--download" in str(e.value) and "\n" not in str(e.value)
    make_stl10(tmp_path)
    d = tmp_path / "stl10_binary"
    (d / "train_y.bin").write_bytes(bytes([0]) * 20)
    with pytest.raises(DataFormatError, match="labels outside 1..10"):
        load_dataset("stl10", tmp_path)
    (d / "train_y.bin").write_bytes(bytes([1]) * 19)
    with pytest.raises(DataFormatError, match="19 labels but .* holds 20 images"):
        load_dataset("stl10", tmp_path)
    (d / "train_y.bin").write_bytes(bytes([1]) * 20)
    (d / "test_X.bin").write_bytes(bytes(IMAGE_BYTES + 5))
    with pytest.raises(DataFormatError, match="not a whole number of 96x96x3 images"):
        load_dataset("stl10", tmp_path)
    with open(d / "test_X.bin", "wb") as f:  # sparse: 8,001 images' worth of size, no data
        f.truncate(8_001 * IMAGE_BYTES)
    with pytest.raises(DataFormatError, match="8001 images, but the release's file holds 8000"):
        load_dataset("stl10", tmp_path)
    (d / "unlabeled_X.bin").unlink()
    with pytest.raises(DataNotFoundError, match="unlabeled_X.bin"):
        load_unlabeled("stl10", tmp_path)


def test_a_full_crop_of_a_96_px_image_to_32_px_is_the_3x3_block_average():
    x = torch.randint(0, 256, (2, 3, 96, 96), dtype=torch.uint8)
    crop = random_resized_crop(x, 32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=0.0)
    blocks = torch.nn.functional.avg_pool2d(x.float() / 255, 3)
    assert torch.allclose(crop, blocks, atol=1e-5)
    mirrored = random_resized_crop(x, 32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=1.0)
    assert torch.allclose(mirrored, blocks.flip(-1), atol=1e-5)


def test_random_resized_crops_vary_per_image_and_repeat_with_a_seed():
    x = torch.rand(64, 3, 96, 96)
    a = random_resized_crop(x, 32, generator=torch.Generator().manual_seed(1))
    b = random_resized_crop(x, 32, generator=torch.Generator().manual_seed(1))
    c = random_resized_crop(x, 32, generator=torch.Generator().manual_seed(2))
    assert a.shape == (64, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # Crops of a small area zoom in: a patch of a vertical stripe pattern has fewer stripes.
    stripes = (torch.arange(96) // 4 % 2).float().expand(8, 3, 96, 96).contiguous()
    small = random_resized_crop(stripes, 32, scale=(0.08, 0.09), ratio=(1.0, 1.0), flip=0.0)
    full = random_resized_crop(stripes, 32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=0.0)
    changes = lambda img: int((img[:, 0, 16].diff(dim=-1).abs() > 0.25).sum())  # noqa: E731
    assert changes(small) < changes(full)


@pytest.mark.slow
def test_stl10_trains_end_to_end_on_its_labelled_split(tmp_path):
    from hcl_core.train import train

    make_stl10(tmp_path / "data", n_train=200, n_test=100, n_unlabeled=10)
    config = RunConfig(dataset="stl10", data_root=str(tmp_path / "data"), encoder="cnn", epochs=1, batch_size=64,
                       max_train=200, eval_size=50, hidden_dim=32, feature_dim=16, threads=1)
    result = train(config, root=tmp_path / "runs")
    assert result.state == "finished", result.message
    assert os.path.isdir(result.run_dir)
