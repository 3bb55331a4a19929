"""Comparisons a class can launch in one click, and how two configurations differ.

A comparison is a list of ``(loss, β)`` rows trained on the same data, encoder and seed as the
base configuration; a preset fills the rows. :func:`differences` names the fields in which the
run on screen differs from the controls, so the Train page can say so instead of showing one
run's curves under another configuration's formula.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .config import FIELDS, RunConfig
from .registry import LOSSES

__all__ = ["PRESETS", "Preset", "comparison_configs", "differences"]

#: Fields that never make two runs differ in what they compute (shown, never flagged).
_BOOKKEEPING = frozenset({"name", "threads", "device", "data_root"})


@dataclass(frozen=True)
class Preset:
    """A named comparison: ``rows`` of ``(loss, β)``; β is None where the base config's β is used."""

    name: str
    description: str
    rows: tuple[tuple[str, float | None], ...]


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("SimCLR vs HCL (β 1 and 4) vs H-SCL", "Does more hardness help, and does label information "
               "remove the false negatives HCL tilts towards?",
               (("info_nce", None), ("hcl", 1.0), ("hcl", 4.0), ("hard_supcon", 1.0))),
        Preset("Four losses", "SimCLR, HCL, SupCon and H-SCL at the β of the controls: unsupervised vs "
               "supervised, with and without hard negatives.",
               (("info_nce", None), ("hcl", None), ("supcon", None), ("hard_supcon", None))),
        Preset("HCL over β", "HCL at β = 0, 0.5, 1, 2, 4, 8: the papers' rise-then-fall of accuracy with β.",
               tuple(("hcl", b) for b in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0))),
        Preset("H-SCL over β", "H-SCL at β = 0, 0.5, 1, 2, 4, 8 (β = 0 is SCL without same-class negatives).",
               tuple(("hard_supcon", b) for b in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0))),
    )
}


def comparison_configs(base: RunConfig, rows: Sequence[tuple[str, float | None]]) -> list[RunConfig]:
    """One config per ``(loss, β)`` row, everything else from ``base``; duplicates are dropped.

    β None (or a loss that reads no β) keeps the base's β, which the config then normalises away
    for losses without a tilt. Raises ``ValueError`` naming an unknown loss or a β out of range.
    """
    out: list[RunConfig] = []
    for loss, beta in rows:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        changes = {"loss": loss, "name": ""} if beta is None else {"loss": loss, "beta": beta, "name": ""}
        config = base.replace(**changes)
        if config not in out:
            out.append(config)
    return out


def differences(shown: RunConfig, controls: RunConfig) -> list[tuple[str, object, object]]:
    """``(field, value of the shown run, value in the controls)`` for each field that differs.

    Bookkeeping fields (name, threads, device, data folder) are left out: they do not change what
    a run computes; so are hyper-parameters that one of the two losses does not read (the loss
    itself is then listed as different).
    """
    a, b = shown.to_dict(), controls.to_dict()
    both_read = {p for p in ("beta", "tau_plus", "detach_weights")
                 if LOSSES[shown.loss].reads(p) and LOSSES[controls.loss].reads(p)}
    skip = _BOOKKEEPING | ({"beta", "tau_plus", "detach_weights"} - both_read)
    return [(k, a[k], b[k]) for k in FIELDS if k not in skip and a[k] != b[k]]
