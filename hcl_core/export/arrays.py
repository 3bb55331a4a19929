"""A snapshot's embeddings for other tools: the TensorBoard Embedding Projector's TSV files, or one ``.npz``.

Every snapshot ``snapshots/epoch_XXXX.npz`` of a run holds the backbone features ``f(x)`` of
the same fixed subset of the *test* split (``eval_size`` samples), with their labels; the
positions in the test split are in ``eval_inputs.npz``. These are the points of the app's
Embeddings page.

Projector (``export_projector``), in the layout the projector's "Load" dialog and
``tensorboard --logdir DIR`` read as they are:

* ``tensors.tsv``: one row per sample, the feature values separated by tabs, no header;
* ``metadata.tsv``: a header row ``label<TAB>class_name<TAB>split``, then one row per sample in
  the same order (the projector needs the header whenever there is more than one column);
* ``projector_config.pbtxt``: names the two files, for TensorBoard's projector plugin.

``export_npz`` writes ``features (n, d) float32``, ``labels (n,) int64``, ``class_names (C,)``,
``test_index (n,)``, ``split`` ``epoch``, ``run_id`` and ``config`` (JSON), all plain arrays that
``np.load(path)`` reads without pickle.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..store import DEFAULT_ROOT, RunFileError, atomic_save_npz, atomic_write_bytes, load_npz
from ._common import ExportError, RunLike, class_names, free_destination, resolve_run

__all__ = ["METADATA_COLUMNS", "Embeddings", "export_npz", "export_projector", "load_embeddings"]

#: The columns of metadata.tsv, in order.
METADATA_COLUMNS = ("label", "class_name", "split")
#: The split the snapshots embed.
SPLIT = "test"


@dataclass(frozen=True)
class Embeddings:
    """The backbone features of a run's evaluation subset at one snapshot.

    Attributes:
        features: ``(n, d)`` float32, row i is sample i.
        labels: ``(n,)`` int64 class labels.
        class_names: the name of each class, by label.
        test_index: ``(n,)`` each sample's position in the data set's test split.
        split: which split the samples come from (always ``"test"``).
        epoch: the snapshot's epoch (0 = the randomly initialised encoder).
        run_id: the run.
        config_json: the run's configuration.
    """

    features: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    test_index: np.ndarray
    split: str
    epoch: int
    run_id: str
    config_json: str

    def class_name(self, row: int) -> str:
        return self.class_names[int(self.labels[row])]


def load_embeddings(run: RunLike, *, epoch: int | None = None, root: str | os.PathLike = DEFAULT_ROOT) -> Embeddings:
    """The features of snapshot ``epoch`` (the last one when None) of ``run``.

    Raises:
        RunFileError: the run has no snapshot, none at ``epoch`` (the message lists those it has),
            or a snapshot file is corrupt.
    """
    r = resolve_run(run, root)
    epoch = r.pick_epoch(epoch)
    snap = r.load_snapshot(epoch)
    try:
        features = np.asarray(snap["features"], dtype=np.float32)
        labels = np.asarray(snap["labels"]).astype(np.int64)
    except KeyError as e:
        raise RunFileError(f"{r.run_id}/snapshots/epoch_{epoch:04d}.npz lacks {e.args[0]!r}") from None
    if features.ndim != 2 or labels.shape != (len(features),):
        raise RunFileError(f"{r.run_id}/snapshots/epoch_{epoch:04d}.npz: features {features.shape} do not fit "
                           f"labels {labels.shape}")
    if len(labels) and labels.min() < 0:
        raise RunFileError(f"{r.run_id}/snapshots/epoch_{epoch:04d}.npz holds negative labels")
    index = _test_index(r, len(labels))
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    return Embeddings(features, labels, class_names(r, n_classes), index, SPLIT, int(epoch), r.run_id,
                      r.config.to_json())


def _test_index(run, n: int) -> np.ndarray:
    """Positions in the test split (from eval_inputs.npz); -1 where the file does not say."""
    try:
        index = np.asarray(load_npz(run.path / "eval_inputs.npz")["indices"]).astype(np.int64)
    except (RunFileError, KeyError, ValueError):
        index = None
    if index is None or index.shape != (n,):
        return np.full(n, -1, dtype=np.int64)
    return index


def _cell(text: str) -> str:
    """A TSV cell: tabs and line breaks would shift the columns or rows."""
    return " ".join(str(text).split()) or "-"


def tensors_tsv(emb: Embeddings) -> bytes:
    """One row per sample, its features separated by tabs; no header."""
    buf = io.BytesIO()
    np.savetxt(buf, emb.features, fmt="%.9g", delimiter="\t")  # 9 digits: every float32 reads back exactly
    return buf.getvalue()


def metadata_tsv(emb: Embeddings) -> bytes:
    """The header ``label, class_name, split``, then one row per row of :func:`tensors_tsv`."""
    rows = ["\t".join(METADATA_COLUMNS)]
    rows += [f"{int(k)}\t{_cell(emb.class_names[int(k)])}\t{emb.split}" for k in emb.labels]
    return ("\n".join(rows) + "\n").encode()


_PBTXT = 'embeddings {{\n  tensor_name: "{name}"\n  tensor_path: "tensors.tsv"\n  metadata_path: "metadata.tsv"\n}}\n'


def export_projector(run: RunLike, to: str | os.PathLike, *, epoch: int | None = None,
                     root: str | os.PathLike = DEFAULT_ROOT) -> Path:
    """Write ``tensors.tsv``, ``metadata.tsv`` and ``projector_config.pbtxt`` into the folder ``to``.

    The folder is created if needed; files already in it are never replaced (an
    :class:`ExportError` names the first). Returns the folder.
    """
    emb = load_embeddings(run, epoch=epoch, root=root)
    folder = Path(to)
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder} is a file: --to must name a folder for the projector's files")
    files = {"tensors.tsv": tensors_tsv(emb), "metadata.tsv": metadata_tsv(emb),
             "projector_config.pbtxt": _PBTXT.format(name=f"{emb.run_id} epoch {emb.epoch}".replace('"', "'")).encode()}
    for name in files:
        free_destination(folder / name, "folder")
    for name, data in files.items():
        atomic_write_bytes(folder / name, data)
    return folder


def export_npz(run: RunLike, to: str | os.PathLike, *, epoch: int | None = None,
               root: str | os.PathLike = DEFAULT_ROOT) -> Path:
    """Write the embeddings of one snapshot to the ``.npz`` file ``to`` (never replaced); returns its path."""
    dest = Path(to)
    if dest.suffix != ".npz":
        raise ExportError(f"--to must name a .npz file, got {dest.name!r}")
    free_destination(dest, "file name")
    emb = load_embeddings(run, epoch=epoch, root=root)
    atomic_save_npz(dest, {
        "features": emb.features, "labels": emb.labels, "class_names": np.array(emb.class_names, dtype=str),
        "test_index": emb.test_index, "split": np.array(emb.split), "epoch": np.array(emb.epoch),
        "run_id": np.array(emb.run_id), "config": np.array(emb.config_json),
    })
    return dest
