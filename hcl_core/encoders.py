"""Small encoders: a backbone that gives the features we evaluate, and a projection head.

As in SimCLR, the loss is applied to the head's output ``z = g(f(x))`` and every evaluation
(linear probe, kNN, embeddings) uses the backbone features ``f(x)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class ContrastiveModel(nn.Module):
    """``backbone`` (x -> features, ``(B, feature_size)``) followed by ``head`` (-> ``(B, out_dim)``)."""

    def __init__(self, backbone: nn.Module, feature_size: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.backbone = backbone
        self.feature_size = feature_size
        self.head = nn.Sequential(
            nn.Linear(feature_size, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    @torch.no_grad()
    def features(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Backbone features of ``x`` in eval mode, computed in batches."""
        was_training = self.training
        self.eval()
        out = torch.cat([self.backbone(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
        self.train(was_training)
        return out


def embed_views(model: nn.Module, x1: Tensor, x2: Tensor, *, separate: bool = True) -> tuple[Tensor, Tensor]:
    """The projections ``(z1, z2)`` of two views of the same batch.

    ``separate``: one forward pass per view, as the published HCL and H-SCL code, so batch norm
    normalises each view with its own batch statistics; otherwise one pass over both (the 2N
    views share the statistics, as in SupContrast's code). In eval mode the two are identical.
    """
    if separate:
        return model(x1), model(x2)
    z = model(torch.cat([x1, x2]))
    return z[: len(x1)], z[len(x1) :]


def _mlp_backbone(in_features: int, hidden: int) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
    )


def _conv1d_block(c_in: int, c_out: int, kernel: int, stride: int) -> list[nn.Module]:
    return [nn.Conv1d(c_in, c_out, kernel, stride, padding=kernel // 2, padding_mode="circular", bias=False),
            nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)]


def _small_cnn1d(channels: int) -> tuple[nn.Module, int]:
    """Four 1-D conv blocks (16, 32, 32, 64 channels), three of them halving the length, then global
    average pooling: about 11k weights, light enough for a 30-epoch MNIST-1D run on a CPU core.

    Circular padding and the pooling make the features (nearly) invariant to circular shifts,
    the translation MNIST-1D's signals are generated with; the receptive field of the last block
    (about 33 samples) spans most of a 40-sample signal. Any length works.
    """
    width = 32
    layers = [
        *_conv1d_block(channels, 16, 5, 1),
        *_conv1d_block(16, width, 3, 2),
        *_conv1d_block(width, width, 3, 2),
        *_conv1d_block(width, 2 * width, 3, 2),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
    ]
    return nn.Sequential(*layers), 2 * width


def _conv_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _small_cnn(channels: int) -> tuple[nn.Module, int]:
    """Three conv blocks, two of them downsampling, then global average pooling: any input size."""
    width = 64
    layers = [
        *_conv_block(channels, 32),
        *_conv_block(32, 64),
        nn.MaxPool2d(2, ceil_mode=True),
        *_conv_block(64, width),
        nn.MaxPool2d(2, ceil_mode=True),
        *_conv_block(width, 2 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ]
    return nn.Sequential(*layers), 2 * width


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def _resnet18_cifar(channels: int) -> tuple[nn.Module, int]:
    """ResNet-18 with the CIFAR stem used by SimCLR/HCL: 3x3 conv, stride 1, no max-pool."""
    layers: list[nn.Module] = [nn.Conv2d(channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(True)]
    c_in = 64
    for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1)]
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), 512


def build_encoder(
    name: str, input_shape: tuple[int, ...], *, hidden_dim: int = 256, out_dim: int = 64
) -> ContrastiveModel:
    """Build ``mlp``, ``cnn`` or ``resnet18`` for inputs of per-sample shape ``input_shape``.

    ``input_shape`` is ``(C, H, W)`` for images, ``(C, L)`` for signals (``mlp`` or ``cnn``, which is
    then the 1-D conv net of :func:`_small_cnn1d`) or ``(D,)`` for vectors (``mlp`` only).
    """
    if name == "mlp":
        in_features = math.prod(input_shape)
        return ContrastiveModel(_mlp_backbone(in_features, hidden_dim), hidden_dim, hidden_dim, out_dim)
    if name == "cnn" and len(input_shape) == 2:
        backbone, size = _small_cnn1d(input_shape[0])
        return ContrastiveModel(backbone, size, hidden_dim, out_dim)
    if len(input_shape) != 3:
        use = "mlp or cnn" if len(input_shape) == 2 else "mlp"
        raise ValueError(f"encoder {name!r} needs images (C, H, W), got inputs of shape {input_shape}: use {use}")
    if name == "cnn":
        backbone, size = _small_cnn(input_shape[0])
    elif name == "resnet18":
        backbone, size = _resnet18_cifar(input_shape[0])
    else:
        raise ValueError(f"unknown encoder {name!r}; choose one of mlp, cnn, resnet18")
    return ContrastiveModel(backbone, size, hidden_dim, out_dim)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available here: use auto or cpu")
    return torch.device(device)
