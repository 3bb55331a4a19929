"""A run's snapshots read as one consistent set, and its UMAP layouts computed ahead of time.

Every snapshot holds the backbone features ``(n, D)`` and labels ``(n,)`` of the run's fixed
evaluation subset at one epoch. The Embeddings page shows the ones that load and agree with each
other; UMAP lays them out as a chain from the last epoch backwards (each earlier epoch starts from
the next one's layout and is aligned onto it), keyed so that the page and :func:`lay_out_ahead`
ask for the same layouts.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .projection import ProjectionService, layout_key
from .store import Run, RunFileError, load_run

__all__ = ["UNREADABLE", "Snapshots", "lay_out_ahead", "read_snapshots", "umap_chain", "umap_key"]

#: What reading a run's array files can raise when a file is missing, cut short or corrupt.
UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)
log = logging.getLogger(__name__)


@dataclass
class Snapshots:
    """The readable snapshots of a run: ``features[i]`` is ``(n, D)`` at ``epochs[i]``; ``labels`` ``(n,)``."""

    epochs: list[int]
    features: list[np.ndarray]
    labels: np.ndarray | None
    problems: list[str]
    stamp: tuple  # identifies these arrays (run folder, epochs, file times): a cache key


def read_snapshots(run: Run, load: Callable[[Run, int], dict] | None = None) -> Snapshots:
    """Every snapshot that loads and fits the others; the rest are named in ``problems``.

    ``load(run, epoch)`` reads one snapshot (default: the store's loader; the app passes its cached one).
    """
    load = load or (lambda r, epoch: r.load_snapshot(epoch))
    out = Snapshots([], [], None, [], ())
    stamp: list = [str(run.path)]
    for epoch in run.snapshot_epochs():
        try:
            snap = load(run, epoch)
            feats, labels = np.asarray(snap["features"]), np.asarray(snap["labels"])
            if feats.ndim != 2 or len(feats) != len(labels) or len(feats) < 3:
                raise ValueError(f"features of shape {feats.shape} for {len(labels)} labels")
            if out.labels is not None and not np.array_equal(labels, out.labels):
                raise ValueError("it holds other samples than the other snapshots")
            if not np.isfinite(feats).all():
                raise ValueError("the features contain NaN or infinity (the training diverged)")
            stamp.append((epoch, run.snapshot_stamp(epoch)))
        except UNREADABLE as e:
            out.problems.append(f"The snapshot of epoch {epoch} is left out: {e or type(e).__name__}.")
            continue
        out.epochs.append(epoch)
        out.features.append(feats)
        out.labels = labels
    out.stamp = tuple(stamp)
    return out


def umap_key(run: Run, snaps: Snapshots, epoch: int) -> str:
    """The service's key of one epoch's UMAP layout in the chain that starts at the last epoch."""
    return layout_key(run.path, epoch, f"umap-chain-from-{snaps.epochs[-1]}")


def umap_chain(run: Run, snaps: Snapshots) -> list[tuple[str, np.ndarray]]:
    """``(key, features)`` in chain order: the last epoch first, each later link starting from the one before."""
    return [(umap_key(run, snaps, e), f) for e, f in zip(reversed(snaps.epochs), reversed(snaps.features), strict=True)]


def lay_out_ahead(service: ProjectionService, run_dir: str | os.PathLike) -> int:
    """Schedule the UMAP chain of a run that has just ended, so the page finds it ready; returns the
    number of fits scheduled. A run that cannot be read is skipped (logged, never raised): this runs
    on a job's reader thread, where nobody could show the error, and the page reports it anyway."""
    try:
        run = load_run(run_dir)
        snaps = read_snapshots(run)
    except (RunFileError, *UNREADABLE) as e:
        log.warning("UMAP ahead of time: %s is skipped (%s)", run_dir, e)
        return 0
    return service.request_chain(umap_chain(run, snaps)) if snaps.epochs else 0
