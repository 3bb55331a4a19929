"""Run bundles: one run folder as a ``.zip`` to share, and a safe import of untrusted bundles.

``export_run(run_dir, dest_zip)`` packs the run's own files, and nothing else, under one top
folder named after the run. ``import_bundle(zip_path, root)`` unpacks a bundle into a *new*
folder under ``root`` (an existing run is never overwritten) after checking everything a
hostile or broken bundle could do wrong:

* member names: no absolute paths, no ``..``, no backslashes or drive letters, no symlinks or
  other special files, no duplicates, no encrypted members;
* sizes: each member, the sum of all members and the number of members are limited (the
  limits are parameters); the sizes that are *read* are counted, not only the declared ones,
  and the arrays inside ``.npz`` files and the records inside the checkpoint count too;
* content: only the files a run has (``config.json``, ``status.json``, ``metrics.jsonl``,
  ``eval_inputs.npz``, ``snapshots/epoch_XXXX.npz``, ``checkpoint.pt``); the config must
  validate; ``.npz`` files must load without pickle and hold numeric arrays; the checkpoint
  must load with ``torch.load(weights_only=True)``.

The bundle is unpacked into a hidden temporary folder under ``root`` first and only renamed
into place when every check has passed, so a refused bundle leaves nothing behind. Nothing
here unpickles: JSON, ``np.load(allow_pickle=False)`` and ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from .config import ConfigError, RunConfig
from .store import TERMINAL_STATES, RunFileError, atomic_file, load_checkpoint, load_npz, load_run

#: Largest single file accepted from a bundle (a ResNet-18 checkpoint is ~45 MB).
MAX_MEMBER_BYTES = 256 * 1024**2
#: Largest total of all files of one bundle, unpacked.
MAX_TOTAL_BYTES = 1024**3
#: Most files in one bundle (a 1000-epoch run snapshotted every epoch has ~1005).
MAX_MEMBERS = 2_000

_RUN_FILES = ("config.json", "status.json", "metrics.jsonl", "eval_inputs.npz", "checkpoint.pt")
_SNAPSHOT_RE = re.compile(r"^snapshots/epoch_\d{4,}\.npz$")
_SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")
_CHUNK = 1024 * 1024
#: Arrays each ``.npz`` of a run must hold (what the pages read).
_NPZ_KEYS = {"eval_inputs.npz": ("inputs", "labels", "indices"),
             "snapshot": ("features", "labels", "z1", "z2", "z_labels")}


class BundleError(RunFileError):
    """A bundle was refused (unsafe, too large, unknown files, invalid content) or cannot be written."""


def _is_run_file(rel: str) -> bool:
    return rel in _RUN_FILES or bool(_SNAPSHOT_RE.match(rel))


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


def export_run(run_dir: str | os.PathLike, dest_zip: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the run in ``run_dir`` to the zip file ``dest_zip``; returns its path.

    Only the run's own files go in (temporary and unknown files are left out), under one top
    folder named after the run. A run still training is refused (its files are still changing),
    as are symlinks inside the run folder (they could point at any file of this machine). The
    zip is written to a temporary file and renamed, so ``dest_zip`` is never half written; an
    existing ``dest_zip`` is kept unless ``overwrite``.
    """
    run = load_run(run_dir)  # RunFileError if it is not a run folder
    if run.state == "running":
        raise BundleError(f"{run.run_id} is still training: stop it or wait for it to finish, then export")
    dest = Path(dest_zip)
    if dest.exists() and not overwrite:
        raise BundleError(f"{dest} already exists: choose another file name")
    files: list[tuple[Path, str]] = []
    for rel in (*_RUN_FILES, *(f"snapshots/epoch_{e:04d}.npz" for e in run.snapshot_epochs())):
        path = run.path / rel
        if path.is_symlink():
            raise BundleError(f"{run.run_id}/{rel} is a symbolic link: refusing to export it")
        if path.is_file():
            files.append((path, rel))
    top = _SAFE_NAME_RE.sub("_", run.run_id).lstrip(".") or "run"
    with atomic_file(dest) as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path, rel in files:
            # .npz are compressed already and the checkpoint barely compresses: store them.
            method = zipfile.ZIP_DEFLATED if rel.endswith((".json", ".jsonl")) else zipfile.ZIP_STORED
            zf.write(path, f"{top}/{rel}", compress_type=method)
    return dest


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------


def _check_name(info: zipfile.ZipInfo) -> str:
    """The member's path relative to the bundle's root, or :class:`BundleError` if it is unsafe."""
    name = info.filename
    if "\x00" in name or "\\" in name:
        raise BundleError(f"refused: member {name!r} has a backslash or NUL in its name")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise BundleError(f"refused: member {name!r} has an absolute path")
    parts = PurePosixPath(name).parts
    if any(p in ("..", ".") for p in name.split("/")):
        raise BundleError(f"refused: member {name!r} leaves the bundle's folder (path traversal)")
    if not parts:
        raise BundleError(f"refused: member {name!r} has an empty name")
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        raise BundleError(f"refused: member {name!r} is a symbolic link")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise BundleError(f"refused: member {name!r} is not a plain file (mode {oct(mode)})")
    if info.flag_bits & 0x1:
        raise BundleError(f"refused: member {name!r} is encrypted")
    return "/".join(parts)


def _members(
    zf: zipfile.ZipFile, max_member: int, max_total: int, max_members: int
) -> tuple[list[tuple[zipfile.ZipInfo, str]], str | None]:
    """The bundle's files as ``(info, path in the run folder)``, checked by name and size, and
    the name of the bundle's top folder (None when the files sit at its root)."""
    infos = zf.infolist()
    if len(infos) > max_members:
        raise BundleError(f"refused: the bundle has {len(infos)} members, more than the limit of {max_members}")
    names = [_check_name(i) for i in infos]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise BundleError(f"refused: member {dup!r} appears twice in the bundle")
    files = [(i, n) for i, n in zip(infos, names, strict=True) if not i.is_dir()]
    if not files:
        raise BundleError("refused: the bundle is empty")
    # One optional top folder (how export_run writes bundles); else the files sit at the root.
    tops = {n.split("/", 1)[0] for _, n in files}
    strip = len(tops) == 1 and all("/" in n for _, n in files) and not _is_run_file(next(iter(tops)))
    out, total = [], 0
    for info, name in files:
        rel = name.split("/", 1)[1] if strip else name
        if not _is_run_file(rel):
            raise BundleError(
                f"refused: unknown file {name!r} in the bundle (a run has only {', '.join(_RUN_FILES)} "
                "and snapshots/epoch_XXXX.npz)"
            )
        if info.file_size > max_member:
            raise BundleError(f"refused: {rel} is {info.file_size} bytes unpacked, more than the limit of "
                              f"{max_member} bytes per file")
        total += info.file_size
        if total > max_total:
            raise BundleError(f"refused: the bundle unpacks to more than the limit of {max_total} bytes")
        out.append((info, rel))
    if not any(rel == "config.json" for _, rel in out):
        raise BundleError("refused: the bundle has no config.json, so it is not a run")
    return out, (next(iter(tops)) if strip else None)


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, budget: int) -> int:
    """Copy one member to ``dest`` counting the bytes really read; returns them."""
    written = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL + O_NOFOLLOW: dest is new in our own temporary folder; never follow anything.
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as out, zf.open(info) as src:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > info.file_size or written > budget:
                raise BundleError(f"refused: {info.filename} unpacks to more bytes than it declares or than allowed")
            out.write(chunk)
    return written


def _check_inner_zip(path: Path, rel: str, max_member: int) -> None:
    """``.npz`` and ``checkpoint.pt`` are zips themselves: bound what they unpack to (zip bombs)."""
    if not zipfile.is_zipfile(path):
        return  # np.load / torch.load refuse it below, or (legacy torch format) read it as is
    try:
        with zipfile.ZipFile(path) as inner:
            total = sum(i.file_size for i in inner.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise BundleError(f"refused: {rel} is corrupt ({e})") from e
    if total > max_member:
        raise BundleError(f"refused: {rel} unpacks to {total} bytes, more than the limit of {max_member} bytes")


def _check_npz(path: Path, rel: str, max_member: int) -> None:
    _check_inner_zip(path, rel, max_member)
    try:
        arrays = load_npz(path)  # allow_pickle=False: an object array is refused here
    except RunFileError as e:
        raise BundleError(f"refused: {rel} is not a plain array file: {e}") from e
    need = _NPZ_KEYS["eval_inputs.npz" if rel == "eval_inputs.npz" else "snapshot"]
    missing = [k for k in need if k not in arrays]
    if missing:
        raise BundleError(f"refused: {rel} lacks the arrays {', '.join(missing)}")
    for key, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise BundleError(f"refused: {rel} array {key!r} has dtype {a.dtype}, not a number type")


def _check_checkpoint(path: Path, max_member: int) -> None:
    import torch

    _check_inner_zip(path, "checkpoint.pt", max_member)
    try:
        state = load_checkpoint(path)  # torch.load(weights_only=True)
    except RunFileError as e:
        raise BundleError(f"refused: {e}") from e
    model = state.get("model")
    if not isinstance(model, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()
    ):
        raise BundleError("refused: checkpoint.pt has no 'model' state dict of named tensors")


def _check_text(path: Path, rel: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(f"refused: {rel} is not UTF-8 text") from e


def _checked_status(path: Path, source: str) -> dict:
    """status.json as written into the imported run: a JSON object, never claiming to be running."""
    if path.exists():
        try:
            status = json.loads(_check_text(path, "status.json"))
        except (ValueError, RecursionError) as e:
            raise BundleError(f"refused: status.json is not valid JSON ({e})") from e
        if not isinstance(status, dict):
            raise BundleError("refused: status.json does not hold a JSON object")
    else:
        status = {}
    if status.get("state") not in TERMINAL_STATES:
        # A bundle of a run that never ended: on this machine it is certainly not running.
        status["state"] = "interrupted"
    for key in ("pid", "host"):  # another machine's process: never to be checked or signalled here
        status.pop(key, None)
    status["imported"] = {"from": source, "at": time.time()}
    return status


def _destination(root: Path, wanted: str) -> Path:
    """A new folder ``root/wanted`` (or ``wanted-2``, ``-3``...): claimed with mkdir, never reused."""
    base = _SAFE_NAME_RE.sub("_", wanted).strip("._-")[:100] or "imported-run"
    path, k = root / base, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            k += 1
            path = root / f"{base}-{k}"


def import_bundle(
    zip_path: str | os.PathLike,
    root: str | os.PathLike,
    *,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_members: int = MAX_MEMBERS,
) -> Path:
    """Unpack the bundle ``zip_path`` into a new run folder under ``root``; returns that folder.

    Raises :class:`BundleError` (a :class:`~hcl_core.store.RunFileError`, a ``ValueError``)
    naming what was refused; nothing is left under ``root`` then. See the module docstring
    for the checks.
    """
    zip_path, root = Path(zip_path), Path(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(zip_path)
    except FileNotFoundError:
        raise BundleError(f"{zip_path} does not exist") from None
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise BundleError(f"refused: {zip_path} is not a zip file ({e})") from None
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".import-"))  # hidden: list_runs skips it
    try:
        with zf:
            members, top = _members(zf, max_member_bytes, max_total_bytes, max_members)
            wanted = top or zip_path.stem
            budget = max_total_bytes
            for info, rel in members:
                try:
                    budget -= _extract(zf, info, tmp / rel, min(max_member_bytes, budget))
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as e:
                    # a CRC mismatch, a damaged stream, an unsupported compression method ...
                    raise BundleError(f"refused: {rel} could not be unpacked ({type(e).__name__}: {e})") from e
        config_text = _check_text(tmp / "config.json", "config.json")
        try:
            RunConfig.from_json(config_text)
        except (ValueError, TypeError, RecursionError) as e:
            field = f" (field {e.field})" if isinstance(e, ConfigError) else ""
            raise BundleError(f"refused: config.json does not validate{field}: {e}") from e
        if (tmp / "metrics.jsonl").exists():
            _check_text(tmp / "metrics.jsonl", "metrics.jsonl")
        for _, rel in members:
            if rel.endswith(".npz"):
                _check_npz(tmp / rel, rel, max_member_bytes)
        if (tmp / "checkpoint.pt").exists():
            _check_checkpoint(tmp / "checkpoint.pt", max_member_bytes)
        (tmp / "snapshots").mkdir(exist_ok=True)
        status = _checked_status(tmp / "status.json", zip_path.name)
        (tmp / "status.json").write_text(json.dumps(status, indent=2, sort_keys=True, default=str))
        dest = _destination(root, wanted)
        os.replace(tmp, dest)  # dest is the empty folder we just claimed: replaced in one step
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    load_run(dest)  # the store reads it back like any other run
    return dest

