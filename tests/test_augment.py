"""The two-view augmentation: per-sample random parameters, reproducible, in range, on any device."""

import pytest
import torch

from hcl_core.data import augment, load_dataset, two_views


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def digits_batch() -> torch.Tensor:
    return load_dataset("digits").train_x[:64]


@pytest.fixture(scope="module")
def rgb_batch() -> torch.Tensor:
    return torch.rand(32, 3, 16, 16, generator=gen(5))


@pytest.mark.parametrize("kind", ["digits", "rgb", "vectors"])
def test_augment_is_reproducible_per_sample_and_in_range(kind, digits_batch, rgb_batch):
    x = {"digits": digits_batch, "rgb": rgb_batch, "vectors": torch.randn(64, 32, generator=gen(3))}[kind]
    is_image = kind != "vectors"
    a = augment(x, 1.0, gen(1), is_image=is_image)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, augment(x, 1.0, gen(1), is_image=is_image)), "same seed, same views"
    assert not torch.equal(a, augment(x, 1.0, gen(2), is_image=is_image))
    if is_image:
        assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # Per-sample parameters: copies of one sample all come out different.
    same = x[:1].expand(16, *x.shape[1:]).contiguous()
    views = augment(same, 1.0, gen(4), is_image=is_image).flatten(1)
    distances = torch.cdist(views, views) + torch.eye(16) * 1e9
    assert float(distances.min()) > 1e-3


def test_strength_zero_is_the_identity_and_small_strength_is_close(digits_batch, rgb_batch):
    for x in (digits_batch, rgb_batch):
        out = augment(x, 0.0, gen())
        assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
        assert float((augment(x, 1e-3, gen()) - x).abs().mean()) < 0.01
    v = torch.randn(8, 32)
    assert torch.equal(augment(v, 0, is_image=False), v)


def test_strength_grows_the_change_and_is_clamped_at_two(digits_batch):
    change = [float((augment(digits_batch, s, gen()) - digits_batch).abs().mean()) for s in (0.25, 1.0, 2.0)]
    assert change[0] < change[1] < change[2]
    assert torch.equal(augment(digits_batch, 7.0, gen()), augment(digits_batch, 2.0, gen()))


def test_augmented_digits_keep_their_class():
    ds = load_dataset("digits")
    train = ds.train_x.flatten(1)
    views = augment(ds.test_x, 0.5, gen()).flatten(1)
    nearest = torch.cdist(views, train).argmin(1)
    assert float((ds.train_y[nearest] == ds.test_y).float().mean()) > 0.7  # 0.98 unaugmented, 0.1 chance


def test_two_views_differ_and_reproduce(digits_batch):
    x1, x2 = two_views(digits_batch, 1.0, gen(7))
    assert x1.shape == x2.shape == digits_batch.shape
    assert (x1 - x2).flatten(1).abs().sum(1).min() > 0, "every pair of views differs"
    y1, y2 = two_views(digits_batch, 1.0, gen(7))
    assert torch.equal(x1, y1) and torch.equal(x2, y2)
    v1, v2 = two_views(torch.randn(10, 32), 0.5, None, is_image=False)
    assert v1.shape == (10, 32) and not torch.equal(v1, v2)


def test_augment_keeps_float64_and_handles_an_empty_batch():
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    assert augment(x, 1.0, gen()).dtype == torch.float64
    assert augment(torch.zeros(0, 3, 8, 8), 1.0).shape == (0, 3, 8, 8)


@pytest.mark.parametrize("strength", [-0.1, float("nan"), "strong", True])
def test_augment_rejects_bad_strength(strength, digits_batch):
    with pytest.raises(ValueError, match="strength"):
        augment(digits_batch, strength)


def test_augment_rejects_wrong_shapes_and_dtypes():
    with pytest.raises(ValueError, match="is_image=False"):
        augment(torch.rand(4, 32), 1.0)
    with pytest.raises(ValueError, match="is_image=True"):
        augment(torch.rand(4, 1, 8, 8), 1.0, is_image=False)
    with pytest.raises(ValueError, match="floating-point"):
        augment(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), 1.0)


#: Every device of this machine: the CUDA case is collected (and runs) only where a GPU is.
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", DEVICES)
def test_augment_on_each_device_with_its_own_or_a_cpu_generator(digits_batch, rgb_batch, device):
    for x in (digits_batch.to(device), rgb_batch.to(device)):
        g = torch.Generator(device=device).manual_seed(0)
        a = augment(x, 1.0, g)
        assert a.device == x.device and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
        assert torch.equal(a, augment(x, 1.0, torch.Generator(device=device).manual_seed(0)))
        assert augment(x, 1.0, gen()).device == x.device
    for x, kind in ((torch.randn(32, 1, 40), "signal"), (torch.randn(32, 64), "twins")):
        x = x.to(device)
        a = augment(x, 1.0, torch.Generator(device=device).manual_seed(0), kind=kind)
        assert a.device == x.device and a.shape == x.shape and bool(torch.isfinite(a).all())
        assert augment(x, 1.0, gen(), kind=kind).device == x.device


# --------------------------------------------------------------------------------------------
# Signals (MNIST-1D) and twins
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signal_batch() -> torch.Tensor:
    return torch.randn(64, 1, 40, generator=gen(9))


def test_signals_are_augmented_per_sample_reproducibly_and_by_shape_alone(signal_batch):
    a = augment(signal_batch, 1.0, gen(1), is_image=False)
    assert a.shape == signal_batch.shape and a.dtype == signal_batch.dtype
    assert torch.equal(a, augment(signal_batch, 1.0, gen(1), kind="signal")), "(N, C, L) means a signal"
    assert not torch.equal(a, augment(signal_batch, 1.0, gen(2), kind="signal"))
    same = signal_batch[:1].expand(16, 1, 40).contiguous()
    views = augment(same, 1.0, gen(4), kind="signal").flatten(1)
    assert float((torch.cdist(views, views) + torch.eye(16) * 1e9).min()) > 1e-3
    assert torch.equal(augment(signal_batch, 0.0, kind="signal"), signal_batch)
    change = [float((augment(signal_batch, s, gen(), kind="signal") - signal_batch).abs().mean())
              for s in (0.1, 0.5, 1.0)]
    assert change[0] < change[1] < change[2]


def test_a_signal_view_shifts_circularly_by_at_most_a_quarter_and_keeps_the_shape_of_a_bump():
    # A smooth bump at position 20; views move it by up to 10 samples either way (40 / 4),
    # scale it by 0.8..1.2, tilt it by a trend of at most 1.2 and add noise of std <= 0.3 + 0.1.
    t = torch.arange(40.0)
    bump = (8.0 * torch.exp(-0.5 * ((t - 20) / 1.5) ** 2)).expand(256, 1, 40).contiguous()
    views = augment(bump, 1.0, gen(3), kind="signal")[:, 0]
    moved = views.argmax(1) - 20
    assert int(moved.abs().max()) <= 11 and int(moved.max()) >= 7 and int(moved.min()) <= -7
    # Peak: 8 scaled by 0.8..1.2, lowered <= 6 % by interpolating between samples, +- 0.6 trend, +- 3 noise sigmas.
    peaks = views.max(1).values
    assert float(peaks.min()) > 0.8 * 8 * 0.94 - 0.6 - 1.2 and float(peaks.max()) < 1.2 * 8 + 0.6 + 1.2
    # Circular: a bump at the edge wraps around instead of leaving the signal.
    edge = torch.roll(bump, 19, dims=2)  # peak at 39
    wrapped = augment(edge, 1.0, gen(3), kind="signal")[:, 0].argmax(1)
    assert int(((wrapped - 39 + 20) % 40 - 20).abs().max()) <= 11
    assert bool((wrapped < 10).any()), "some peaks went past the end and came back at the start"


def test_twins_and_signal_augmentation_refuse_the_wrong_shape_and_unknown_kinds_are_named():
    with pytest.raises(ValueError, match="twins augmentation needs vectors of 16 signal and 48 nuisance"):
        augment(torch.randn(4, 10), 1.0, kind="twins")
    with pytest.raises(ValueError, match="signal augmentation needs a batch with 3 dimensions"):
        augment(torch.randn(4, 40), 1.0, kind="signal")
    with pytest.raises(ValueError, match="unknown augmentation 'audio'"):
        augment(torch.randn(4, 40), 1.0, kind="audio")
    with pytest.raises(ValueError, match="is_image=True"):
        augment(torch.randn(4, 1, 8, 8), 1.0, is_image=False)
