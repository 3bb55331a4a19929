"""Do augmented views keep their class? The fraction a classifier trained on clean images still gets right.

Contrastive learning assumes the two views of a sample share its class: a view that has become
another class (a 6 turned into a 9, a digit pushed out of its 8x8 frame) is a positive pair of
two classes. :func:`view_fidelity` measures it per augmentation strength: a classifier is trained
on the *clean* training images (no augmentation), then scores ``draws`` random views of every
test image at each strength. The proposed strength of a data set is the largest one on the
grid at which the classifier keeps at least ``threshold`` (95 %) of its clean accuracy: views
keep their class 95 % of the time, as far as a judge that is right on ``clean_accuracy`` of the
clean images can tell. (Where the judge is near perfect, as on digits at 99.4 %, this is the
plain accuracy within a point; where the classes overlap, as on the synthetic mixture at 81 %,
the plain accuracy can never reach 95 %.)

The classifier is the project's own backbone with a linear layer: the small CNN for images
(convolutions tolerate small shifts, as a reader would), the MLP for vectors. It is a judge, not
an oracle: its clean accuracy is reported beside the numbers, and a view it misreads may still
be readable to a person.

``python -m hcl_core <subcommand>`` is wired through :func:`add_arguments` and :func:`run`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .. import data as data_lib
from ..encoders import build_encoder
from ..threads import limited_threads
from .views_command import DEFAULT_STRENGTHS, THRESHOLD  # defined there: the command line reads them without torch

__all__ = ["DEFAULT_STRENGTHS", "THRESHOLD", "ViewFidelity", "view_fidelity"]


@dataclass(frozen=True)
class ViewFidelity:
    """Accuracy of a clean-trained classifier on augmented test views, per strength.

    Attributes:
        dataset: the data set's name.
        classifier: the backbone of the judge (``cnn`` or ``mlp``).
        clean_accuracy: its accuracy on the clean test images.
        strengths: ``(S,)`` the strengths, increasing.
        accuracy: ``(S,)`` mean accuracy over the draws of views.
        std: ``(S,)`` standard deviation over the draws.
        draws: views per test image and strength.
        test_size: test images.
        threshold: the fraction of the clean accuracy the proposal must keep.
        seconds: wall time of the measurement.
    """

    dataset: str
    classifier: str
    clean_accuracy: float
    strengths: np.ndarray
    accuracy: np.ndarray
    std: np.ndarray
    draws: int
    test_size: int
    threshold: float
    seconds: float

    @property
    def retained(self) -> np.ndarray:
        """``(S,)`` the accuracy on views as a fraction of the clean accuracy."""
        return self.accuracy / max(self.clean_accuracy, 1e-12)

    @property
    def proposed(self) -> float:
        """The largest strength whose views keep at least ``threshold`` of the clean accuracy (0 if none)."""
        ok = self.strengths[self.retained >= self.threshold]
        return float(ok.max()) if len(ok) else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(strengths=self.strengths.tolist(), accuracy=self.accuracy.tolist(), std=self.std.tolist(),
                   retained=self.retained.tolist(), proposed=self.proposed)
        return out


def _classifier(ds: data_lib.Dataset) -> tuple[str, nn.Module]:
    kind = "cnn" if ds.is_image else "mlp"
    model = build_encoder(kind, ds.input_shape)
    return kind, nn.Sequential(model.backbone, nn.Linear(model.feature_size, ds.num_classes))


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, batch: int, seed: int) -> None:
    """Cross-entropy on clean samples, Adam lr 1e-3, ``steps`` mini-batches drawn without augmentation."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(x), (min(batch, len(x)),), generator=gen)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    pred = torch.cat([model(x[i : i + 1024]).argmax(dim=1) for i in range(0, len(x), 1024)])
    return float((pred == y).float().mean())


def view_fidelity(dataset: str, *, strengths: Sequence[float] = DEFAULT_STRENGTHS, data_root: str | None = None,
                  draws: int = 5, seed: int = 0, steps: int = 1500, batch: int = 128,
                  threshold: float = THRESHOLD, synthetic_overlap: float = 0.3,
                  max_train: int | None = None) -> ViewFidelity:
    """Train a classifier on the clean training images of ``dataset``, then score augmented test views.

    Args:
        dataset: a name in :data:`hcl_core.registry.DATASETS`.
        strengths: augmentation strengths in [0, 2].
        data_root: the folder of a data set read from files.
        draws: random views of each test image per strength (their accuracies give the std).
        seed: seeds the classifier, its batches and the views.
        steps, batch: the classifier's training (Adam, lr 1e-3, no augmentation).
        threshold: the fraction of the clean accuracy the views must keep for a strength to be proposed.
        synthetic_overlap, max_train: as in ``RunConfig``.

    Raises ``ValueError`` for bad arguments and the data set's own errors when its files are missing.
    """
    grid = np.asarray(sorted({float(s) for s in strengths}))
    if not len(grid) or grid.min() < 0 or grid.max() > data_lib.MAX_STRENGTH:
        raise ValueError(f"strengths must be numbers in [0, {data_lib.MAX_STRENGTH:g}], got {list(strengths)}")
    if draws < 1 or steps < 1 or batch < 1:
        raise ValueError(f"draws, steps and batch must be >= 1, got {draws}, {steps}, {batch}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
    t0 = time.perf_counter()
    ds = data_lib.load_dataset(dataset, data_root, max_train=max_train, synthetic_overlap=synthetic_overlap)
    torch.manual_seed(seed)
    kind, model = _classifier(ds)
    with limited_threads():
        _fit(model, ds.train_x, ds.train_y, steps=steps, batch=batch, seed=seed)
        clean = _accuracy(model, ds.test_x, ds.test_y)
        acc = np.zeros((len(grid), draws))
        for k, strength in enumerate(grid):
            for d in range(draws):
                gen = torch.Generator().manual_seed(seed * 1_000_003 + 7919 * k + d)
                views = data_lib.augment(ds.test_x, float(strength), gen, kind=ds.augmentation)
                acc[k, d] = _accuracy(model, views, ds.test_y)
    return ViewFidelity(dataset, kind, clean, grid, acc.mean(axis=1), acc.std(axis=1, ddof=1) if draws > 1 else
                        np.zeros(len(grid)), draws, len(ds.test_y), float(threshold), time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------
