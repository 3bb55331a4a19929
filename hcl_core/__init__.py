"""Hardness Explorer core: contrastive losses with hard negatives, training, evaluation, run files.

UI-free: nothing in this package imports streamlit. The public API (``docs/API.md``)::

    import hcl_core
    loss_fn = hcl_core.HCLLoss(tau=0.5, beta=1.0, tau_plus=0.1)   # an nn.Module
    encoder = hcl_core.load_encoder("models/<run>")               # a trained backbone, eval mode

Training is :func:`hcl_core.train.train` (a submodule of that name, so not re-exported here).
Names are resolved on first use, so ``import hcl_core`` (and ``import hcl_core.config``, which
the command line's ``list`` and the app's first paint rely on) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the submodule that defines it.
_API: dict[str, str] = {
    # the loss functions and their modules
    **dict.fromkeys(("info_nce", "dcl", "hcl", "h_ucl", "supcon", "hard_supcon", "compute_loss"), "losses"),
    **dict.fromkeys(("InfoNCELoss", "DCLLoss", "HCLLoss", "HUCLLoss", "SupConLoss", "HardSupConLoss",
                     "ContrastiveLoss", "LOSS_MODULES", "loss_module", "loss_from_config"), "modules"),
    # configuring and training runs, reading them back
    **dict.fromkeys(("RunConfig", "ConfigError"), "config"),
    "build_encoder": "encoders",
    **dict.fromkeys(("Run", "RunFileError", "find_run", "list_runs", "load_run"), "store"),
    # taking results away
    **dict.fromkeys(("load_encoder", "encoder_info", "export_safetensors", "export_projector", "export_npz",
                     "load_embeddings", "Embeddings", "EncoderInfo", "figure_bytes", "ExportError"), "export"),
    "TensorBoardLogger": "tracking",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'hcl_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
