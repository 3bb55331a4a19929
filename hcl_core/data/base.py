"""The in-memory data set container and the two errors a loader raises."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["AUGMENTATIONS", "NO_DOWNLOAD", "DataFormatError", "DataNotFoundError", "Dataset", "Parts"]

#: The augmentation families (:mod:`hcl_core.data.augment`) and the sample dimensions each takes.
AUGMENTATIONS: dict[str, int] = {"image": 3, "vector": 1, "signal": 2, "twins": 1}

#: Why no file is ever fetched; appended to every "files not found" message.
NO_DOWNLOAD = "this app never downloads data sets, since that needs a network, which it does not use"

#: What a loader returns: ``(train_x, train_y, test_x, test_y, class names)``.
Parts = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[str, ...]]


class DataNotFoundError(FileNotFoundError):
    """The files of a data set are not where they should be (the message says what to put where)."""


class DataFormatError(ValueError):
    """A data file exists but is not in the expected format (corrupt, truncated or unsafe)."""


# eq=False: comparing tensors field by field is ambiguous; two Datasets are equal only if identical.
@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split held in memory.

    ``train_x``/``test_x``: ``float32``, ``(N, C, H, W)`` in ``[0, 1]`` for images, ``(N, D)``
    for vectors, ``(N, C, L)`` for signals (C channels of L samples). ``train_y``/``test_y``:
    ``int64``, ``(N,)``. ``augmentation`` names the family of the two views (a key of
    :data:`AUGMENTATIONS`); left empty, the shape decides (images, vectors or signals). Loaded
    data sets are cached and shared: treat the tensors as read-only (index or clone them first).
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    is_image: bool
    augmentation: str = ""

    def __post_init__(self) -> None:
        if not self.augmentation:
            derived = "image" if self.is_image else "signal" if self.train_x.dim() == 3 else "vector"
            object.__setattr__(self, "augmentation", derived)
        if self.augmentation not in AUGMENTATIONS or (self.augmentation == "image") != self.is_image:
            raise ValueError(f"{self.name}: augmentation {self.augmentation!r} does not fit is_image={self.is_image}; "
                             f"choose one of {', '.join(AUGMENTATIONS)}")
        # Catch a loader bug here rather than as a shape error deep inside training.
        want_dims = AUGMENTATIONS[self.augmentation] + 1
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.dtype != torch.float32 or y.dtype != torch.int64:
                raise ValueError(f"{self.name} {split}: inputs must be float32 and labels int64, "
                                 f"got {x.dtype} and {y.dtype}")
            if x.dim() != want_dims or y.dim() != 1 or len(x) != len(y):
                raise ValueError(f"{self.name} {split}: inputs of shape {tuple(x.shape)} do not fit labels of "
                                 f"shape {tuple(y.shape)} (images need 4 dims, signals 3, vectors 2)")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise ValueError(f"{self.name} {split}: labels must lie in 0..{len(self.classes) - 1}")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(f"{self.name}: train samples {tuple(self.train_x.shape[1:])} and test samples "
                             f"{tuple(self.test_x.shape[1:])} differ in shape")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample: ``(C, H, W)`` for images, ``(D,)`` for vectors, ``(C, L)`` for signals."""
        return tuple(self.train_x.shape[1:])
