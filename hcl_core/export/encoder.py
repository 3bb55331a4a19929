"""The trained encoder as an ``nn.Module``, and as a ``.safetensors`` file that carries its architecture.

A run's ``checkpoint.pt`` holds the state of a :class:`~hcl_core.encoders.ContrastiveModel`
(``backbone`` then ``head``) at its last snapshot. :func:`load_encoder` rebuilds that model from
the run's config and loads the weights; :func:`export_safetensors` writes them to a file in the
ecosystem's safe format (no pickle: a tensor table and a JSON header) with, in the header's
metadata and in a ``.json`` file beside it::

    format            "hcl_core.encoder"
    format_version    "1"
    architecture      {"encoder", "input_shape", "hidden_dim", "out_dim", "feature_size"} (JSON)
    config            the run's RunConfig (JSON)
    run_id, epoch, class_names (JSON list), hcl_core_version

so that ``load_encoder("encoder.safetensors")`` needs nothing else. Any file is checked before
a weight is allocated: the model is first built on torch's ``meta`` device (no memory) and every
tensor's name and shape in the file must match it exactly.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..config import RunConfig
from ..encoders import ContrastiveModel, build_encoder, resolve_device
from ..registry import DATASETS
from ..store import DEFAULT_ROOT, Run, RunFileError, atomic_write_bytes, load_npz
from ._common import ExportError, RunLike, class_names, free_destination, resolve_run

__all__ = ["FORMAT", "FORMAT_VERSION", "EncoderInfo", "encoder_info", "export_safetensors", "load_encoder"]

FORMAT = "hcl_core.encoder"
FORMAT_VERSION = "1"
_SUFFIX = ".safetensors"
#: Largest sample (values per input) an encoder file may declare: a 3 x 1024 x 1024 image.
_MAX_INPUT_VALUES = 3 * 1024 * 1024


@dataclass(frozen=True)
class EncoderInfo:
    """What a trained encoder is, without its weights.

    Attributes:
        architecture: ``{"encoder", "input_shape", "hidden_dim", "out_dim", "feature_size"}``:
            what :func:`hcl_core.encoders.build_encoder` needs, and the backbone's output size.
        config: the run's configuration.
        run_id: the run it comes from.
        epoch: the epoch of the weights (the run's last snapshot).
        class_names: the names of the data set's classes, by label.
    """

    architecture: dict[str, Any]
    config: RunConfig
    run_id: str
    epoch: int
    class_names: tuple[str, ...]

    def metadata(self) -> dict[str, str]:
        """The safetensors header metadata (string to string)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "architecture": json.dumps(self.architecture, sort_keys=True),
            "config": self.config.to_json(),
            "run_id": self.run_id,
            "epoch": str(self.epoch),
            "class_names": json.dumps(list(self.class_names)),
            "hcl_core_version": __version__,
        }

    def to_json(self) -> str:
        """The sidecar file: the same facts, as one readable JSON object."""
        return json.dumps({
            "format": FORMAT, "format_version": FORMAT_VERSION, "architecture": self.architecture,
            "config": self.config.to_dict(), "run_id": self.run_id, "epoch": self.epoch,
            "class_names": list(self.class_names), "hcl_core_version": __version__,
        }, indent=2, sort_keys=True)


# --------------------------------------------------------------------------------------------
# the architecture
# --------------------------------------------------------------------------------------------


def _input_shape(run: Run) -> tuple[int, ...]:
    spec = DATASETS.get(run.config.dataset)
    if spec is not None and spec.input_shape is not None:
        return tuple(spec.input_shape)
    # Your own images: their size is a choice of the loader, recorded in the evaluation inputs.
    try:
        inputs = load_npz(run.path / "eval_inputs.npz")["inputs"]
    except (RunFileError, KeyError) as e:
        raise ExportError(f"{run.run_id}: the input size of its {run.config.dataset} samples is known only from "
                          f"eval_inputs.npz, which cannot be read ({e})") from None
    return tuple(int(d) for d in inputs.shape[1:])


def _architecture(config: RunConfig, input_shape: tuple[int, ...]) -> dict[str, Any]:
    model = _meta_model(config.encoder, input_shape, config.hidden_dim, config.feature_dim)
    return {"encoder": config.encoder, "input_shape": list(input_shape), "hidden_dim": config.hidden_dim,
            "out_dim": config.feature_dim, "feature_size": model.feature_size}


def _meta_model(encoder: str, input_shape: tuple[int, ...], hidden_dim: int, out_dim: int) -> ContrastiveModel:
    """The model on torch's meta device: every shape, no memory. :func:`_fill` gives it its weights."""
    with torch.device("meta"):
        return build_encoder(encoder, input_shape, hidden_dim=hidden_dim, out_dim=out_dim)


def _check_architecture(info: EncoderInfo, where: str) -> tuple[str, tuple[int, ...], int, int]:
    """The build arguments of ``info``; its architecture must agree with its (validated) config."""
    arch, config = info.architecture, info.config
    if not isinstance(arch, dict):
        raise ExportError(f"{where}: the architecture is not a JSON object")
    for key, value in (("encoder", config.encoder), ("hidden_dim", config.hidden_dim), ("out_dim", config.feature_dim)):
        if arch.get(key) != value:
            raise ExportError(f"{where}: the architecture's {key} {arch.get(key)!r} disagrees with the "
                              f"config's {value!r}")
    shape = arch.get("input_shape")
    if (not isinstance(shape, list) or len(shape) not in (1, 3)
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)
            or math.prod(shape) > _MAX_INPUT_VALUES):
        raise ExportError(f"{where}: input_shape must be [D] or [C, H, W] of positive whole numbers "
                          f"(at most {_MAX_INPUT_VALUES} values), got {shape!r}")
    return config.encoder, tuple(shape), config.hidden_dim, config.feature_dim


def _fill(model: ContrastiveModel, state: dict[str, Any], where: str) -> ContrastiveModel:
    """Load ``state`` into the meta-device ``model`` after checking every name, shape and dtype."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ExportError(f"{where}: the weights do not fit the architecture "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, want in expected.items():
        got = state[name]
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ExportError(f"{where}: {name} has shape {shape}, the architecture needs {tuple(want.shape)}")
        if got.dtype.is_floating_point != want.dtype.is_floating_point:
            raise ExportError(f"{where}: {name} is {got.dtype}, the architecture needs {want.dtype}")
        if got.dtype.is_floating_point and not bool(torch.isfinite(got).all()):
            raise ExportError(f"{where}: {name} holds NaN or infinite values")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):  # a tensor no state_dict holds
        raise AssertionError("an encoder tensor was left without a value")
    return model


# --------------------------------------------------------------------------------------------
# from a run, from a file
# --------------------------------------------------------------------------------------------


def _is_encoder_file(run: Any) -> bool:
    return isinstance(run, str | os.PathLike) and str(run).endswith(_SUFFIX)


def _from_run(run: RunLike, root: str | os.PathLike) -> tuple[EncoderInfo, dict[str, Any]]:
    r = resolve_run(run, root)
    checkpoint = r.load_checkpoint()  # torch.load(weights_only=True): RunFileError when missing or unsafe
    state = checkpoint.get("model")
    if not isinstance(state, dict):
        raise ExportError(f"{r.run_id}/checkpoint.pt holds no model weights")
    arch = _architecture(r.config, _input_shape(r))
    known = DATASETS[r.config.dataset].class_names
    n_classes = len(known) if known is not None else _labels_in(r)
    epoch = checkpoint.get("epoch")
    info = EncoderInfo(arch, r.config, r.run_id, int(epoch) if isinstance(epoch, int) else -1,
                       class_names(r, n_classes))
    return info, state


def _labels_in(run: Run) -> int:
    try:
        labels = load_npz(run.path / "eval_inputs.npz")["labels"]
    except (RunFileError, KeyError):
        return 0
    return int(labels.max()) + 1 if len(labels) else 0


def _from_file(path: str | os.PathLike) -> tuple[EncoderInfo, dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    where = path.name
    if not path.is_file():
        raise ExportError(f"{path} does not exist (or is not a file)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            info = _info_from_metadata(meta, where)
            model = _meta_model(*_check_architecture(info, where))
            shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
            names = set(f.keys())
            if names != set(shapes):  # checked before any tensor is read
                missing, unexpected = sorted(set(shapes) - names)[:3], sorted(names - set(shapes))[:3]
                raise ExportError(f"{where}: its tensors do not fit the architecture in its metadata "
                                  f"(missing {missing}, unexpected {unexpected})")
            for k in names:
                if tuple(f.get_slice(k).get_shape()) != shapes[k]:
                    raise ExportError(f"{where}: {k} has shape {tuple(f.get_slice(k).get_shape())}, "
                                      f"the architecture needs {shapes[k]}")
            state = {k: f.get_tensor(k) for k in names}
    except (SafetensorError, OSError) as e:
        raise ExportError(f"{where} could not be read as a safetensors file ({type(e).__name__}: {e})") from None
    return info, state


def _info_from_metadata(meta: dict[str, str], where: str) -> EncoderInfo:
    if meta.get("format") != FORMAT:
        raise ExportError(f"{where} is a safetensors file but not an encoder written by hcl_core "
                          f"(metadata format {meta.get('format')!r}, expected {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{where} has format version {meta.get('format_version')!r}; this hcl_core reads "
                          f"version {FORMAT_VERSION}")
    try:
        arch = json.loads(meta["architecture"])
        config = RunConfig.from_json(meta["config"])
        names = json.loads(meta.get("class_names", "[]"))
        epoch = int(meta.get("epoch", "-1"))
    except (KeyError, ValueError, TypeError, RecursionError) as e:  # ConfigError is a ValueError
        raise ExportError(f"{where}: corrupt metadata ({type(e).__name__}: {e})") from None
    if not isinstance(names, list):
        raise ExportError(f"{where}: class_names must be a JSON list")
    return EncoderInfo(arch, config, str(meta.get("run_id", "")), epoch, tuple(str(n) for n in names))


def _load(run: RunLike, root: str | os.PathLike) -> tuple[EncoderInfo, ContrastiveModel]:
    if _is_encoder_file(run):
        info, state = _from_file(run)
        where = Path(run).name
    else:
        info, state = _from_run(run, root)
        where = f"{info.run_id}/checkpoint.pt"
    model = _meta_model(*_check_architecture(info, where))
    return info, _fill(model, state, where)


def encoder_info(run: RunLike, *, root: str | os.PathLike = DEFAULT_ROOT) -> EncoderInfo:
    """What :func:`load_encoder` would load (architecture, config, epoch, class names)."""
    if _is_encoder_file(run):
        from safetensors import SafetensorError, safe_open

        if not Path(run).is_file():
            raise ExportError(f"{run} does not exist (or is not a file)")
        try:
            with safe_open(str(run), framework="pt", device="cpu") as f:
                return _info_from_metadata(f.metadata() or {}, Path(run).name)
        except (SafetensorError, OSError) as e:
            raise ExportError(f"{Path(run).name} could not be read as a safetensors file ({e})") from None
    return _from_run(run, root)[0]


def load_encoder(run: RunLike, *, head: bool = False, device: str | torch.device = "cpu",
                 root: str | os.PathLike = DEFAULT_ROOT) -> nn.Module:
    """A run's trained encoder, in eval mode, on ``device``.

    Args:
        run: a run folder, a run id (or a unique prefix of one) under ``root``, a
            :class:`~hcl_core.store.Run`, or a ``.safetensors`` file written by
            :func:`export_safetensors`.
        head: False: the backbone ``f``, ``x -> (B, feature_size)`` features, which every probe
            and plot of the app evaluates. True: the whole model ``g(f(x))``, ``x -> (B, out_dim)``,
            whose output the loss was applied to; its ``.backbone`` and ``.head`` are the parts.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` or a ``torch.device``.
        root: the folder that holds the runs, for a run id.

    Inputs are what the run trained on: images ``(B, C, H, W)`` in ``[0, 1]`` (the MLP flattens
    them) or vectors ``(B, D)``; see ``encoder_info(run).architecture["input_shape"]``.

    Raises:
        RunFileError: the run or its checkpoint is missing, corrupt or unsafe.
        ExportError: the weights do not fit the architecture, or the file is not an hcl_core encoder.
    """
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    _, model = _load(run, root)
    module = model if head else model.backbone
    return module.to(dev).eval()


def export_safetensors(run: RunLike, to: str | os.PathLike, *, root: str | os.PathLike = DEFAULT_ROOT) -> Path:
    """Write the run's weights to ``to`` (``*.safetensors``) and the facts to ``to`` with ``.json``.

    The whole model (backbone and head) is written; :func:`load_encoder` reads the file back
    (``head=True`` for the whole model). Neither file may exist yet; each is written to a
    temporary file and renamed, so neither is ever half written. Returns the ``.safetensors`` path.
    """
    from safetensors.torch import save

    dest = Path(to)
    if dest.suffix != _SUFFIX:
        raise ExportError(f"--to must name a {_SUFFIX} file, got {dest.name!r}")
    sidecar = dest.with_suffix(".json")
    free_destination(dest, "file name")
    free_destination(sidecar, "file name (the .json beside it)")
    info, model = _load(run, root)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(dest, save(tensors, metadata=info.metadata()))
    atomic_write_bytes(sidecar, (info.to_json() + "\n").encode())
    return dest
