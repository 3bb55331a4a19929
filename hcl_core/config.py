"""The one description of a training run: a frozen, validated ``RunConfig``.

Every field has a :class:`Field` entry in ``FIELDS`` (type, allowed range or choices, help
text). The command line builds its flags from it, the app its controls and help texts, and the
URL query parameters are parsed through it, so the three can never disagree.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .registry import DATASETS, LOSSES, dataset_spec, loss_spec

DATASET_NAMES = tuple(DATASETS)
ENCODER_NAMES = ("mlp", "cnn", "resnet18")
DEVICE_NAMES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Field:
    """How one ``RunConfig`` field is typed, bounded and explained."""

    type: type
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False  # None allowed

    def describe_range(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.type is bool:
            return "true or false"
        if self.low is not None and self.high is not None:
            return f"between {self.low:g} and {self.high:g}"
        if self.low is not None:
            return f">= {self.low:g}"
        return "any value"


FIELDS: dict[str, Field] = {
    "dataset": Field(str, "Data set. digits (bundled) needs nothing; the others read --data-root.",
                     choices=DATASET_NAMES),
    "data_root": Field(str, "Folder holding the data set's files (not needed for digits/synthetic).",
                       optional=True),
    "encoder": Field(str, "Backbone: mlp (fast, any data), cnn (small conv net), resnet18 (CIFAR-style).",
                     choices=ENCODER_NAMES),
    "loss": Field(str, "Contrastive loss.", choices=tuple(LOSSES)),
    "beta": Field(float, "Hardness: tilts the negatives' weights by exp(beta * cos / tau). 0 = no tilt.",
                  low=0.0, high=20.0),
    "tau": Field(float, "Temperature dividing the cosine similarities.", low=0.05, high=2.0),
    "tau_plus": Field(float, "Class prior of DCL/HCL: chance a random negative shares the anchor's class.",
                      low=0.0, high=0.99),
    "detach_weights": Field(bool, "Treat the hardness weights as constants in the backward pass."),
    "batch_size": Field(int, "Samples per batch (each gives two views: 2N - 2 negatives per anchor).",
                        low=8, high=4096),
    "epochs": Field(int, "Passes over the training set.", low=1, high=1000),
    "lr": Field(float, "Adam learning rate.", low=1e-6, high=1.0),
    "weight_decay": Field(float, "Adam weight decay.", low=0.0, high=0.1),
    "aug_strength": Field(float, "Strength of the two-view augmentation (0 = identical views; empty = the data "
                          "set's measured default, at which views keep their class).", optional=True,
                          low=0.0, high=2.0),
    "seed": Field(int, "Random seed: the same seed on the same device reproduces the run.",
                  low=0, high=2**31 - 1),
    "device": Field(str, "auto picks cuda when a GPU is available, else cpu.", choices=DEVICE_NAMES),
    "snapshot_every": Field(int, "Evaluate and save embeddings every K epochs (and at the last).",
                            low=1, high=1000),
    "eval_size": Field(int, "Test samples embedded in each snapshot (for the plots).", low=50, high=5000),
    "feature_dim": Field(int, "Output size of the projection head.", low=2, high=1024),
    "hidden_dim": Field(int, "Width of the MLP / head hidden layers.", low=8, high=4096),
    "max_train": Field(int, "Use at most this many training samples (None = all).", low=100,
                       high=10_000_000, optional=True),
    "synthetic_overlap": Field(float, "Class overlap of the synthetic data set (0 = separated).",
                               low=0.0, high=1.0),
    "twins_gap": Field(float, "twins: how far apart the two classes of a twin pair lie (0 = identical twins).",
                       low=0.0, high=2.0),
    "twins_classes": Field(int, "twins: the number of classes (few classes = many same-class negatives in a "
                           "batch).", low=2, high=40),
    "image_size": Field(int, "Side in pixels that stl10 and image_folder images are resized to (stl10: 96 keeps "
                        "the originals; 32 or 48 for the CPU).", low=8, high=512),
    "unlabeled": Field(bool, "Self-supervised losses also train on the data set's unlabelled images "
                       "(stl10: train+unlabeled, 105,000 images); the probes use the labelled splits."),
    "threads": Field(int, "CPU threads for torch (0 = torch's default).", low=0, high=256),
    "name": Field(str, "Optional label for the run (shown in lists)."),
}


class ConfigError(ValueError):
    """A ``RunConfig`` field is out of range; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _coerce(name: str, value: Any) -> Any:
    """Convert ``value`` to the field's type, raising :class:`ConfigError` with the allowed range."""
    spec = FIELDS[name]
    if value is None or (spec.optional and value in ("", "none", "None", "null")):
        if spec.optional:
            return None
        raise ConfigError(name, f"{name} is required ({spec.describe_range()})")
    try:
        if spec.type is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value = value.lower() in ("true", "1", "yes")
            return bool(value)
        if spec.type is int:
            as_float = float(value)
            if not as_float.is_integer():
                raise ValueError
            value = int(as_float)
        elif spec.type is float:
            value = float(value)
        else:
            value = str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            name, f"{name} must be {spec.type.__name__} ({spec.describe_range()}), got {value!r}"
        ) from None
    if spec.type is float and not math.isfinite(value):
        raise ConfigError(name, f"{name} must be a finite number ({spec.describe_range()}), got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(name, f"{name} must be {spec.describe_range()}; got {value!r}")
    if spec.low is not None and value < spec.low or spec.high is not None and value > spec.high:
        raise ConfigError(name, f"{name} must be {spec.describe_range()}, got {value!r}")
    return value


@dataclass(frozen=True)
class RunConfig:
    """A validated training configuration. Construction raises :class:`ConfigError` naming the field."""

    dataset: str = "digits"
    data_root: str | None = None
    encoder: str = "mlp"
    loss: str = "hcl"
    beta: float = 1.0
    tau: float = 0.5
    tau_plus: float = 0.1
    detach_weights: bool = False
    batch_size: int = 256
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-6
    aug_strength: float | None = None
    seed: int = 0
    device: str = "auto"
    snapshot_every: int = 5
    eval_size: int = 360
    feature_dim: int = 64
    hidden_dim: int = 256
    max_train: int | None = None
    synthetic_overlap: float = 0.3
    twins_gap: float = 0.5
    twins_classes: int = 10
    image_size: int = 32
    unlabeled: bool = False
    threads: int = 0
    name: str = ""
    # The values normalised away (see below), kept out of equality and files: replace(loss=...)
    # puts them back, so switching a config from SimCLR to HCL keeps the user's β and τ⁺.
    _unread: tuple[tuple[str, Any], ...] = dataclasses.field(default=(), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in FIELDS:
            object.__setattr__(self, name, _coerce(name, getattr(self, name)))
        data = dataset_spec(self.dataset)
        if self.aug_strength is None:  # the data set's measured default
            object.__setattr__(self, "aug_strength", data.default_aug_strength)
        if data.needs_root and not self.data_root:
            bundled = ", ".join(n for n, d in DATASETS.items() if not d.needs_root)
            raise ConfigError(
                "data_root",
                f"data set {self.dataset!r} is read from local files: set data_root to the folder "
                f"holding them (only {bundled} need no files)",
            )
        if self.encoder not in data.encoders:
            raise ConfigError("encoder", f"encoder {self.encoder!r} does not accept {self.dataset} samples: "
                                         f"use {' or '.join(data.encoders)}")
        # What the loss does not read is normalised, so that two configs that train identically
        # are equal (run names, sweep groups, "is this the run on screen" all compare configs).
        spec = loss_spec(self.loss)
        neutral = {"beta": 0.0, "tau_plus": 0.0, "detach_weights": False}
        unread = tuple((name, getattr(self, name)) for name in neutral if not spec.reads(name))
        object.__setattr__(self, "_unread", unread)
        for name, _ in unread:
            object.__setattr__(self, name, neutral[name])

    # -- the hyper-parameters the chosen loss actually reads -------------------------------
    @property
    def loss_params(self) -> tuple[str, ...]:
        return loss_spec(self.loss).params

    def _read_params(self) -> list[tuple[str, float]]:
        """``(name, value)`` of the loss hyper-parameters this config's loss reads, in table order."""
        return [(p, getattr(self, p)) for p in ("beta", "tau", "tau_plus") if p in self.loss_params]

    def short_name(self) -> str:
        """e.g. ``hcl-b1-t0.5-tp0.1-s0`` (only the parameters the loss uses): for folder names."""
        abbr = {"beta": "b", "tau": "t", "tau_plus": "tp"}
        return "-".join([self.loss, *(f"{abbr[p]}{v:g}" for p, v in self._read_params()), f"s{self.seed}"])

    def label(self) -> str:
        """e.g. ``HCL · β=1 · τ=0.5 · τ⁺=0.1 · seed 0``: for people."""
        symbol = {"beta": "β", "tau": "τ", "tau_plus": "τ⁺"}
        return " · ".join([loss_spec(self.loss).short, *(f"{symbol[p]}={v:g}" for p, v in self._read_params()),
                           f"seed {self.seed}"])

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        """Build from a dict; unknown keys raise a ConfigError naming them."""
        unknown = sorted(set(d) - set(FIELDS))
        if unknown:
            raise ConfigError(unknown[0], f"unknown config field(s): {', '.join(unknown)}")
        return cls(**dict(d))

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.from_dict(json.loads(text))

    def given(self, name: str) -> Any:
        """The value given for field ``name``, also where the loss does not read it (normalised away)."""
        return dict(self._unread).get(name, getattr(self, name))

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes``; a parameter this config's loss did not read comes back with its
        value from before normalisation (``RunConfig(loss="info_nce", tau_plus=0.2).replace(loss="hcl")``
        has τ⁺ = 0.2)."""
        restored = {name: value for name, value in self._unread if name not in changes}
        return dataclasses.replace(self, **restored, **changes)

    def to_query(self) -> dict[str, str]:
        """URL query parameters holding the fields that differ from the defaults."""
        default = RunConfig()
        spec = loss_spec(self.loss)
        out = {}
        for k, v in self.to_dict().items():
            if k in ("beta", "tau_plus", "detach_weights") and not spec.reads(k):
                continue  # normalised away: a link need not carry it
            if v != getattr(default, k):
                out[k] = "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        return out

    @classmethod
    def from_query(cls, params: Mapping[str, Any]) -> tuple[RunConfig, list[str]]:
        """Parse URL query parameters leniently.

        Unknown keys are ignored and a value out of range falls back to its default; each such
        case gives a notice to show the user. Returns ``(config, notices)``.
        """
        notices: list[str] = []
        values: dict[str, Any] = {}
        for k, v in params.items():
            if isinstance(v, list | tuple):
                v = v[-1] if v else None
            if k not in FIELDS:
                continue
            try:
                values[k] = _coerce(k, v)
            except ConfigError as e:
                notices.append(f"Link parameter ignored, default used: {e}")
        try:
            return cls(**values), notices
        except ConfigError as e:
            values.pop(e.field, None)
            notices.append(f"Link parameter ignored, default used: {e}")
            try:
                return cls(**values), notices
            except ConfigError as e2:
                notices.append(f"Link ignored: {e2}")
                return cls(), notices
