"""Encoders: every data set's encoders build and run on its sample shape; the 1-D CNN's shift invariance."""

import pytest
import torch

from hcl_core.encoders import build_encoder
from hcl_core.registry import DATASETS


@pytest.mark.parametrize("name", [n for n, d in DATASETS.items() if d.input_shape is not None])
def test_every_encoder_a_data_set_lists_builds_and_embeds_its_samples(name):
    spec = DATASETS[name]
    # The ResNet's stem fixes only the channel count: CIFAR-10 stands for every image set (it is slow to build).
    encoders = [e for e in spec.encoders if e != "resnet18" or name == "cifar10"]
    for encoder in encoders:
        model = build_encoder(encoder, spec.input_shape, hidden_dim=32, out_dim=8).eval()
        x = torch.randn(3, *spec.input_shape)
        assert model(x).shape == (3, 8), (name, encoder)
        assert model.features(x).shape == (3, model.feature_size)


def test_the_1d_cnn_is_exactly_invariant_to_circular_shifts_by_multiples_of_its_stride():
    torch.manual_seed(0)
    model = build_encoder("cnn", (1, 40), hidden_dim=32, out_dim=8)
    # Train mode once so the batch-norm statistics are not the identity, then evaluate.
    model(torch.randn(64, 1, 40))
    model.eval()
    x = torch.randn(16, 1, 40)
    f = model.features(x)
    assert torch.allclose(model.features(torch.roll(x, 8, dims=2)), f, atol=1e-5), "8 = 2^3, three halvings"
    assert torch.allclose(model.features(torch.roll(x, -16, dims=2)), f, atol=1e-5)
    assert not torch.allclose(model.features(torch.roll(x, 3, dims=2)), f, atol=1e-3), "only nearly, in between"
    assert model.feature_size == 64 and build_encoder("cnn", (1, 57)).features(torch.randn(2, 1, 57)).shape == (2, 64)


def test_an_encoder_that_does_not_fit_the_samples_says_which_does():
    with pytest.raises(ValueError, match="use mlp$"):
        build_encoder("cnn", (32,))
    with pytest.raises(ValueError, match="use mlp or cnn"):
        build_encoder("resnet18", (1, 40))
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("vit", (3, 32, 32))
