"""The one place where losses, metrics and data sets are described (no torch, no streamlit).

Every decision about "which losses read β", "is this loss supervised", "what is this metric
called and is lower better", "does this data set need a folder" is read from these tables: the
command line, the config validation, the sweep grid, the training loop, the figures and the
pages all derive from them, so a new loss or data set is one record here plus its code.

Importing this module is cheap: ``python -m hcl_core list`` and ``import hcl_core.config`` use
it without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DATASETS",
    "HYPER_PARAMS",
    "LOSSES",
    "METRICS",
    "PROBES",
    "DatasetSpec",
    "LossSpec",
    "MetricSpec",
    "dataset_spec",
    "loss_spec",
    "metric_spec",
]

#: The loss hyper-parameters a loss may read; each is a ``RunConfig`` field.
HYPER_PARAMS = ("tau", "beta", "tau_plus")


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossSpec:
    """What a loss is, for everything but its arithmetic (which lives in :mod:`hcl_core.losses`).

    Attributes:
        name: the key used in configs, flags and URLs (``hcl``).
        label: the full name shown in menus (``HCL (hard negatives)``).
        short: the name in legends and table cells (``HCL``).
        params: the hyper-parameters of :data:`HYPER_PARAMS` the loss reads; a config normalises
            the others to 0 so that two configs that train identically compare equal.
        supervised: takes class labels (positives are the same-class views).
        clamp: has the DCL/HCL lower clamp ``N_g >= M e^{-1/tau}``.
        tilts: re-weights its negatives by ``e^{beta s}`` (reads β).
        detachable: accepts ``detach_weights`` (the tilt's weights as constants in the backward).
        color: one fixed colour (Okabe-Ito) for this loss on every page and figure.
        reference: the paper it comes from.
    """

    name: str
    label: str
    short: str
    params: tuple[str, ...]
    supervised: bool
    clamp: bool
    tilts: bool
    detachable: bool
    color: str
    reference: str

    def reads(self, param: str) -> bool:
        """Whether this loss reads the hyper-parameter (or the flag ``detach_weights``)."""
        if param == "detach_weights":
            return self.detachable
        return param in self.params


def _losses(*specs: LossSpec) -> dict[str, LossSpec]:
    for s in specs:
        unknown = set(s.params) - set(HYPER_PARAMS)
        if unknown or s.tilts != ("beta" in s.params) or (s.detachable and not s.tilts):
            raise AssertionError(f"inconsistent loss record {s.name!r}")
    return {s.name: s for s in specs}


LOSSES: dict[str, LossSpec] = _losses(
    LossSpec("info_nce", "UCL / SimCLR (InfoNCE)", "UCL / SimCLR", ("tau",), supervised=False, clamp=False,
             tilts=False, detachable=False, color="#000000", reference="Chen et al., ICML 2020"),
    LossSpec("dcl", "DCL (debiased)", "DCL", ("tau", "tau_plus"), supervised=False, clamp=True,
             tilts=False, detachable=False, color="#E69F00", reference="Chuang et al., NeurIPS 2020"),
    LossSpec("hcl", "HCL (hard negatives)", "HCL", ("tau", "beta", "tau_plus"), supervised=False, clamp=True,
             tilts=True, detachable=True, color="#D55E00", reference="Robinson et al., ICLR 2021"),
    LossSpec("h_ucl", "H-UCL (HCL without debiasing)", "H-UCL", ("tau", "beta"), supervised=False, clamp=False,
             tilts=True, detachable=False, color="#CC79A7", reference="Jiang et al., 2024"),
    LossSpec("supcon", "SCL / SupCon", "SCL / SupCon", ("tau",), supervised=True, clamp=False,
             tilts=False, detachable=False, color="#0072B2", reference="Khosla et al., NeurIPS 2020"),
    LossSpec("hard_supcon", "H-SCL (hard supervised)", "H-SCL", ("tau", "beta"), supervised=True, clamp=False,
             tilts=True, detachable=True, color="#009E73", reference="Jiang et al., 2024"),
)


def loss_spec(name: str) -> LossSpec:
    """The record of loss ``name``; a ``ValueError`` lists the choices for an unknown name."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}") from None


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSpec:
    """A number a run reports at each evaluation and in its summary.

    Attributes:
        key: the key in events and summaries (``knn_acc``).
        label: the axis and chart title (``kNN (k=200)``).
        short: the table header (``kNN``).
        lower_is_better: for the arrows and colours of deltas.
        probe: an accuracy measured with labels (it has raw-input and random-encoder baselines).
        help: one plain sentence for captions and tooltips.
    """

    key: str
    label: str
    short: str
    lower_is_better: bool
    probe: bool
    help: str


METRICS: dict[str, MetricSpec] = {
    m.key: m
    for m in (
        MetricSpec("linear_probe_acc", "linear probe (all labels)", "linear probe", False, True,
                   "Logistic regression on the frozen backbone features, trained on every training label."),
        MetricSpec("few_shot_probe_acc", "few-shot probe (10 labels/class)", "few-shot", False, True,
                   "Logistic regression on 10 labelled samples per class (mean of 5 draws)."),
        MetricSpec("knn_acc", "kNN (k=200)", "kNN", False, True,
                   "Weighted vote of the 200 nearest training samples by cosine similarity."),
        MetricSpec("alignment", "alignment (lower = positives closer)", "alignment", True, False,
                   "Mean squared distance between the two views of a sample (Wang & Isola). It rises "
                   "early in training as the embedding spreads out: that is not bad news on its own."),
        MetricSpec("uniformity", "uniformity (lower = more spread)", "uniformity", True, False,
                   "log of the mean Gaussian potential between embeddings (Wang & Isola): lower is more "
                   "evenly spread over the sphere."),
        MetricSpec("same_class_mass", "same-class weight mass", "same-class mass", True, False,
                   "Share of the loss's negative weight that falls on views of the anchor's own class."),
    )
}

#: The probe accuracies, in the order the app shows them.
PROBES = tuple(k for k, m in METRICS.items() if m.probe)


def metric_spec(key: str) -> MetricSpec:
    try:
        return METRICS[key]
    except KeyError:
        raise ValueError(f"unknown metric {key!r}; choose one of {', '.join(METRICS)}") from None


# --------------------------------------------------------------------------------------------
# data sets
# --------------------------------------------------------------------------------------------

_DIGITS = tuple(str(i) for i in range(10))
_FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
            "Ankle boot")
_CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class DatasetSpec:
    """What a data set is, before anything is loaded.

    Attributes:
        name: the key in configs and flags.
        label: the name in menus.
        description: one or two sentences: what it is, where its files go.
        needs_root: read from files under a folder (or the one file) the user names (``data_root``).
        is_image: samples are images ``(C, H, W)``; otherwise vectors ``(D,)`` or signals ``(C, L)``.
        input_shape: the shape of one sample, or None where it depends on the files.
        class_names: the class names, or None where they come from the files or a parameter.
        encoders: the encoders that accept its samples.
        augmentation: the family its two views come from (``image``, ``vector``, ``signal``,
            ``twins``; see :mod:`hcl_core.data.augment`), or None where the samples' shape decides.
    """

    name: str
    label: str
    description: str
    needs_root: bool
    is_image: bool
    input_shape: tuple[int, ...] | None
    class_names: tuple[str, ...] | None
    encoders: tuple[str, ...] = ("mlp", "cnn", "resnet18")
    augmentation: str | None = None


DATASETS: dict[str, DatasetSpec] = {
    d.name: d
    for d in (
        DatasetSpec("digits", "digits (bundled, 8×8)",
                    "8x8 handwritten digits bundled with scikit-learn (1797 images, 10 classes); no files needed.",
                    needs_root=False, is_image=True, input_shape=(1, 8, 8), class_names=_DIGITS),
        DatasetSpec("synthetic", "synthetic (Gaussian mixture)",
                    "Gaussian mixture of 10 classes on the unit sphere in 32 dimensions, with an adjustable "
                    "class overlap; no files needed.",
                    needs_root=False, is_image=False, input_shape=(32,),
                    class_names=tuple(f"class {i}" for i in range(10)), encoders=("mlp",)),
        DatasetSpec("mnist1d", "MNIST-1D (generated, 1-D signals)",
                    "MNIST-1D (Greydanus & Kobak): 10 digit templates as 40-sample signals, each padded, "
                    "scaled, shifted, sheared and noised; 4000 train / 1000 test, generated offline by the "
                    "mnist1d package with its default arguments and cached.",
                    needs_root=False, is_image=False, input_shape=(1, 40), class_names=_DIGITS,
                    encoders=("mlp", "cnn"), augmentation="signal"),
        DatasetSpec("twins", "twins (hard negatives by design)",
                    "Classes in pairs of near-twins (a small class-defining difference: the hard negatives) "
                    "in well-separated groups (the easy negatives), in 16 signal dimensions seen with a random "
                    "sign, beside 48 nuisance dimensions of large variance; the two views redraw sign and "
                    "nuisance. Knobs: the twin gap and the number of classes; no files needed.",
                    needs_root=False, is_image=False, input_shape=(64,), class_names=None, encoders=("mlp",),
                    augmentation="twins"),
        DatasetSpec("mnist", "MNIST",
                    "MNIST handwritten digits, 28x28 grayscale, read from the four IDX files in root/MNIST/raw/.",
                    needs_root=True, is_image=True, input_shape=(1, 28, 28), class_names=_DIGITS),
        DatasetSpec("fashion_mnist", "Fashion-MNIST",
                    "Fashion-MNIST clothing, 28x28 grayscale, read from the four IDX files in "
                    "root/FashionMNIST/raw/.",
                    needs_root=True, is_image=True, input_shape=(1, 28, 28), class_names=_FASHION),
        DatasetSpec("cifar10", "CIFAR-10",
                    "CIFAR-10, 32x32 colour, 10 classes, read from root/cifar-10-batches-py/.",
                    needs_root=True, is_image=True, input_shape=(3, 32, 32), class_names=_CIFAR10),
        DatasetSpec("cifar100", "CIFAR-100",
                    "CIFAR-100, 32x32 colour, 100 fine classes, read from root/cifar-100-python/.",
                    needs_root=True, is_image=True, input_shape=(3, 32, 32), class_names=None),
        DatasetSpec("image_folder", "image folder",
                    "Your own images: root/<class>/*.png|jpg (or root/train/<class> and root/test/<class>), "
                    "resized to a square.",
                    needs_root=True, is_image=True, input_shape=None, class_names=None),
        DatasetSpec("npz", "your arrays (.npz)",
                    "Your own arrays: one .npz file (data_root) with x_train, y_train, x_test, y_test and "
                    "optionally class_names; samples (N, D) vectors, (N, C, L) signals or (N, C, H, W) images.",
                    needs_root=True, is_image=False, input_shape=None, class_names=None),
    )
}


def dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}") from None
