"""Taking results away: the trained encoder, the embeddings and the figures, as files other tools read.

* :func:`load_encoder` / :func:`export_safetensors` (``encoder.py``): the backbone (and head) of a
  run as an ``nn.Module``; the weights as a ``.safetensors`` file with the architecture and the
  config in its metadata and in a ``.json`` beside it.
* :func:`export_projector` / :func:`export_npz` (``arrays.py``): a snapshot's backbone features
  with labels and class names, as the TensorBoard Embedding Projector's two TSV files or one
  ``.npz``.
* :func:`figure_bytes` (``figures.py``): a Plotly figure as PNG, SVG or PDF bytes, drawn by
  kaleido in the system's Chromium.
* ``command.py``: ``python -m hcl_core export RUN --format ... --to ...``.

Importing this package is cheap (no torch); each name loads its module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._common import ExportError

_API: dict[str, str] = {
    **dict.fromkeys(("EncoderInfo", "encoder_info", "export_safetensors", "load_encoder"), "encoder"),
    **dict.fromkeys(("Embeddings", "export_npz", "export_projector", "load_embeddings"), "arrays"),
    **dict.fromkeys(("FIGURE_FORMATS", "FigureExportError", "chromium_path", "figure_bytes",
                     "static_export_problem"), "figures"),
    **dict.fromkeys(("FORMATS", "add_arguments", "run"), "command"),
}

__all__ = ["ExportError", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'hcl_core.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
