"""Data sets and the two-view augmentation.

Every data set comes back as one :class:`Dataset` of in-memory tensors:

* images: ``float32`` of shape ``(N, C, H, W)`` with values in ``[0, 1]``;
* vectors (``synthetic``): ``float32`` of shape ``(N, D)``;
* labels: ``int64`` of shape ``(N,)``, values in ``0 .. num_classes - 1``.

``digits`` (bundled with scikit-learn) and ``synthetic`` need nothing on disk. The others read
the files their usual archives unpack to, from a folder the user names (``root``); nothing here
downloads anything, because the app runs without a network. What each data set is lives in
:data:`hcl_core.registry.DATASETS` (re-exported here as :data:`DATASETS`).

Modules: :mod:`.base` (the container, the errors), :mod:`.loading` (``load_dataset`` and its
cache), :mod:`.splits`, :mod:`.builtin` (digits, synthetic), :mod:`.idx` (MNIST IDX files),
:mod:`.safe_pickle` (the allow-list unpickler), :mod:`.cifar`, :mod:`.image_folder`,
:mod:`.augment`.
"""

from ..registry import DATASETS, DatasetSpec
from .augment import MAX_STRENGTH, augment, two_views
from .base import DataFormatError, DataNotFoundError, Dataset
from .cifar import CIFAR10_FILES
from .loading import clear_cache, load_dataset

# tests/test_faults.py writes a CIFAR folder from this list under its old private name.
_CIFAR10_FILES = CIFAR10_FILES

__all__ = [
    "DATASETS",
    "MAX_STRENGTH",
    "DataFormatError",
    "DataNotFoundError",
    "Dataset",
    "DatasetSpec",
    "augment",
    "clear_cache",
    "load_dataset",
    "two_views",
]
