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
    "APP_DATASET",
    "DATASETS",
    "HYPER_PARAMS",
    "LOSSES",
    "METRICS",
    "PROBES",
    "SUMMARY_METRICS",
    "DatasetSpec",
    "LossSpec",
    "MetricSpec",
    "dataset_spec",
    "loss_spec",
    "metric_spec",
    "raw_name",
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
    """A number a run reports at each evaluation (and, for most, in its summary).

    Attributes:
        key: the key in events and summaries (``knn_acc``).
        label: the axis and chart title (``kNN (k=200)``).
        short: the table header (``kNN``); :attr:`header` adds an arrow where lower is better.
        lower_is_better: for arrows and for the colour of deltas (True: a fall is good news).
        probe: an accuracy measured with labels (it has raw-input and random-encoder baselines).
        summarised: averaged over seeds in sweep summaries.
        help: one plain sentence for captions and tooltips.
    """

    key: str
    label: str
    short: str
    lower_is_better: bool
    probe: bool
    summarised: bool
    help: str

    @property
    def header(self) -> str:
        return f"{self.short} ↓" if self.lower_is_better else self.short


METRICS: dict[str, MetricSpec] = {
    m.key: m
    for m in (
        MetricSpec("linear_probe_acc", "linear probe (all labels)", "linear probe", False, True, True,
                   "Logistic regression on the frozen backbone features, trained on every training label."),
        MetricSpec("few_shot_probe_acc", "few-shot probe (10 labels/class)", "few-shot probe", False, True, True,
                   "Logistic regression on 10 labelled samples per class (mean of 5 draws)."),
        MetricSpec("knn_acc", "kNN (k=200)", "kNN", False, True, True,
                   "Weighted vote of the 200 nearest training samples by cosine similarity."),
        MetricSpec("alignment", "alignment (lower = positives closer)", "alignment", True, False, True,
                   "Mean squared distance between the two views of a sample (Wang & Isola). It often rises "
                   "early in training as the embedding spreads out: that is not bad news on its own."),
        MetricSpec("uniformity", "uniformity (lower = more spread)", "uniformity", True, False, True,
                   "Log of the mean Gaussian potential between embeddings (Wang & Isola): lower is spread "
                   "more evenly over the sphere."),
        MetricSpec("same_class_mass", "same-class weight mass", "same-class mass", False, False, True,
                   "Share of the loss's negative weight that falls on views of the anchor's own class "
                   "(false negatives)."),
        MetricSpec("effective_negatives", "effective number of negatives", "eff. negatives", False, False, False,
                   "How many negatives carry the weight, (Σw)²/Σw²: all of them when weights are equal, "
                   "1 when one negative takes it all."),
        MetricSpec("clamp_share", "anchors where the clamp binds", "clamp binds", False, False, False,
                   "DCL/HCL only: share of anchors whose debiased negative term hit its lower bound; "
                   "those anchors' negatives get no gradient."),
    )
}

#: The probe accuracies, in the order the app shows them.
PROBES = tuple(k for k, m in METRICS.items() if m.probe)
#: The metrics averaged over seeds in sweep summaries, in table order.
SUMMARY_METRICS = tuple(k for k, m in METRICS.items() if m.summarised)


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
_STL10 = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


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
        options: the ``RunConfig`` fields that only this data set reads (the app shows their
            controls for it alone).
        view_strength: the augmentation strength a run uses by default: measured
            (``python -m hcl_core views``, docs/PROTOCOL.md) as the largest strength whose views a
            classifier trained on clean samples still classifies correctly 95 % as often as clean
            ones; None where it has not been measured (then 1.0).
        shows_best: one sentence for the app's help: what this data set shows best.
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
    options: tuple[str, ...] = ()
    view_strength: float | None = None
    shows_best: str = ""

    @property
    def default_aug_strength(self) -> float:
        return 1.0 if self.view_strength is None else self.view_strength

    @property
    def raw_name(self) -> str:
        """What the raw-input baseline is called: pixels for images, inputs for vectors and signals."""
        return "raw pixels" if self.is_image else "raw inputs"


def raw_name(dataset: str) -> str:
    """The raw-input baseline's name for ``dataset``; "raw inputs" for a data set not registered here
    (a run written by another version)."""
    return DATASETS[dataset].raw_name if dataset in DATASETS else "raw inputs"


DATASETS: dict[str, DatasetSpec] = {
    d.name: d
    for d in (
        DatasetSpec("digits", "digits (bundled, 8×8)",
                    "8x8 handwritten digits bundled with scikit-learn (1797 images, 10 classes); no files needed.",
                    needs_root=False, is_image=True, input_shape=(1, 8, 8), class_names=_DIGITS, view_strength=0.4,
                    shows_best="the mechanics, in seconds: where each loss puts its weight and how clusters form; "
                    "its probes are nearly saturated, so accuracy differences between losses are small."),
        DatasetSpec("synthetic", "synthetic (Gaussian mixture)",
                    "Gaussian mixture of 10 classes on the unit sphere in 32 dimensions, with an adjustable "
                    "class overlap; no files needed.",
                    needs_root=False, is_image=False, input_shape=(32,),
                    class_names=tuple(f"class {i}" for i in range(10)), encoders=("mlp",),
                    options=("synthetic_overlap",), view_strength=0.6,
                    shows_best="class overlap as a knob: how false negatives grow as classes overlap."),
        DatasetSpec("mnist1d", "MNIST-1D (generated, 1-D signals)",
                    "MNIST-1D (Greydanus & Kobak): 10 digit templates as 40-sample signals, each padded, "
                    "scaled, shifted, sheared and noised; 4000 train / 1000 test, generated offline by the "
                    "mnist1d package with its default arguments and cached.",
                    needs_root=False, is_image=False, input_shape=(1, 40), class_names=_DIGITS,
                    encoders=("mlp", "cnn"), augmentation="signal",
                    shows_best="a published benchmark where representations differ: raw signals are weak, so "
                    "what contrastive training adds is visible in the probes."),
        DatasetSpec("twins", "twins (hard negatives by design)",
                    "Classes in pairs of near-twins (a small class-defining difference: the hard negatives) "
                    "in well-separated groups (the easy negatives), in 16 signal dimensions seen with a random "
                    "sign, beside 48 nuisance dimensions of large variance; the two views redraw sign and "
                    "nuisance. Knobs: the twin gap and the number of classes; no files needed.",
                    needs_root=False, is_image=False, input_shape=(64,), class_names=None, encoders=("mlp",),
                    augmentation="twins", options=("twins_gap", "twins_classes"),
                    shows_best="the mechanism HCL claims: telling near-twins apart needs the hard negatives, and "
                    "few classes put many false negatives in a batch, where H-SCL should win."),
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
        DatasetSpec("stl10", "STL-10",
                    "STL-10, 96x96 colour, 10 classes: 5,000 labelled training and 8,000 test images, plus 100,000 "
                    "unlabelled ones for self-supervised training, read from root/stl10_binary/ and resized to "
                    "image_size.",
                    needs_root=True, is_image=True, input_shape=None, class_names=_STL10,
                    options=("image_size", "unlabeled"),
                    shows_best="HCL's headline data set (SimCLR 80.15, HCL 87.44 at β = 1 in its README), at CPU "
                    "scale."),
        DatasetSpec("image_folder", "image folder",
                    "Your own images: root/<class>/*.png|jpg (or root/train/<class> and root/test/<class>), "
                    "resized to a square.",
                    needs_root=True, is_image=True, input_shape=None, class_names=None, options=("image_size",)),
        DatasetSpec("npz", "your arrays (.npz)",
                    "Your own arrays: one .npz file (data_root) with x_train, y_train, x_test, y_test and "
                    "optionally class_names; samples (N, D) vectors, (N, C, L) signals or (N, C, H, W) images.",
                    needs_root=True, is_image=False, input_shape=None, class_names=None),
    )
}


#: The data set the app opens on: on twins a first-time user sees, within a minute, both of the
#: papers' claims at many standard deviations (docs/RESULTS.md: HCL's rise then fall with β; H-SCL
#: 20 kNN points above SupCon), in runs of a few seconds. The command line's default stays digits.
APP_DATASET = "twins"


def dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}") from None
