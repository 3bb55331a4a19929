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
  ``eval_inputs.npz``, ``snapshots/epoch_XXXX.npz``, ``checkpoint.pt``), each checked by the
  same validated readers the store uses, strictly: the config must validate; every field of
  ``status.json`` must have its type and range, and its times must not lie in the future (a
  run dated ahead would pose as the newest); every line of ``metrics.jsonl`` must be a valid
  event, and the log at most ``max_log_bytes``; ``.npz`` headers are checked (dtype, element
  count, declared size) before any array is read without pickle, and the arrays must fit each
  other; the checkpoint must load with ``torch.load(weights_only=True)`` as a state dict.

A refusal is one line (no temporary folder names, no terminal codes).

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

from .runfiles import TERMINAL_STATES, RunFileError, check_status, clean_message, open_regular, read_config
from .runlog import check_log
from .safeload import NPZ_KEYS, check_snapshot, load_checkpoint, load_npz
from .store import RUN_FILES, atomic_file, load_run

__all__ = ["MAX_LOG_BYTES", "MAX_MEMBERS", "MAX_MEMBER_BYTES", "MAX_TOTAL_BYTES", "BundleError", "export_run",
           "import_bundle"]

#: Largest single file accepted from a bundle (a ResNet-18 checkpoint is ~45 MB).
MAX_MEMBER_BYTES = 256 * 1024**2
#: Largest total of all files of one bundle, unpacked.
MAX_TOTAL_BYTES = 1024**3
#: Most files in one bundle (a 1000-epoch run snapshotted every epoch has ~1005).
MAX_MEMBERS = 2_000
#: Largest event log accepted (a 1000-epoch CIFAR-10 run writes ~20 MB).
MAX_LOG_BYTES = 64 * 1024**2
#: How far a recorded time may lie ahead of this machine's clock (clocks of two machines differ a little).
CLOCK_SKEW_S = 300.0

_RUN_FILES = RUN_FILES
_SNAPSHOT_RE = re.compile(r"^snapshots/epoch_(\d{4}|[1-9]\d{4,})\.npz$")
_SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")
_CHUNK = 1024 * 1024


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


def _check_npz(path: Path, rel: str, max_member: int) -> None:
    """Headers first (no allocation beyond what the limits allow), then the arrays, their kind and shapes."""
    try:
        arrays = load_npz(path, name=rel, max_bytes=max_member)  # allow_pickle=False
    except RunFileError as e:
        detail = str(e).removeprefix(f"{rel}: ").removeprefix(f"{rel} ")
        if detail.startswith("unpacks to"):  # a bomb: the size is the news
            raise BundleError(f"refused: {e}") from None
        raise BundleError(f"refused: {rel} is not a plain array file: {detail}") from None
    need = NPZ_KEYS["eval_inputs" if rel == "eval_inputs.npz" else "snapshot"]
    missing = [k for k in need if k not in arrays]
    if missing:
        raise BundleError(f"refused: {rel} lacks the arrays {', '.join(missing)}")
    try:
        if rel != "eval_inputs.npz":
            check_snapshot(arrays, rel)
        elif not len(arrays["inputs"]) == len(arrays["labels"]) == len(arrays["indices"]):
            raise RunFileError(f"{rel}: inputs, labels and indices differ in length")
    except RunFileError as e:
        raise BundleError(f"refused: {e}") from None


def _check_checkpoint(path: Path, max_member: int) -> None:
    try:
        load_checkpoint(path, name="checkpoint.pt", max_bytes=max_member)  # torch.load(weights_only=True)
    except RunFileError as e:
        raise BundleError(f"refused: {e}") from None


def _checked_status(path: Path, source: str) -> dict:
    """status.json as written into the imported run: checked field by field, times not in the future,
    and never claiming to be running."""
    if path.exists():
        try:
            with open_regular(path, max_bytes=1024**2, name="status.json") as f:
                text = f.read().decode("utf-8")
            raw = json.loads(text)
        except UnicodeDecodeError:
            raise BundleError("refused: status.json is not UTF-8 text") from None
        except (ValueError, RecursionError) as e:
            raise BundleError(f"refused: status.json is not valid JSON ({clean_message(str(e), 200)})") from None
        if not isinstance(raw, dict):
            raise BundleError("refused: status.json does not hold a JSON object")
        problems: list[str] = []
        status = check_status(raw, problems)
        if problems:
            raise BundleError(f"refused: {problems[0].removesuffix(' (ignored)')}")
    else:
        status = {}
    now = time.time()
    for key in ("started", "updated", "ended"):
        if status.get(key, 0.0) > now + CLOCK_SKEW_S:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(status[key]))
            raise BundleError(f"refused: status.json says the run {key} at {when}, in the future")
    if status.get("state") not in TERMINAL_STATES:
        # A bundle of a run that never ended: on this machine it is certainly not running.
        status["state"] = "interrupted"
    for key in ("pid", "pid_started", "host"):  # another machine's process: never checked or signalled here
        status.pop(key, None)
    status["imported"] = {"from": clean_message(source, 255), "at": now}
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
    max_log_bytes: int = MAX_LOG_BYTES,
) -> Path:
    """Unpack the bundle ``zip_path`` into a new run folder under ``root``; returns that folder.

    Raises :class:`BundleError` (a :class:`~hcl_core.store.RunFileError`, a ``ValueError``)
    naming what was refused in one line; nothing is left under ``root`` then. See the module
    docstring for the checks.
    """
    try:
        return _import_bundle(Path(zip_path), Path(root), max_member_bytes, max_total_bytes, max_members,
                              max_log_bytes)
    except BundleError as e:
        raise BundleError(clean_message(" ".join(str(e).split()), 500)) from None


def _import_bundle(zip_path: Path, root: Path, max_member_bytes: int, max_total_bytes: int, max_members: int,
                   max_log_bytes: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    try:
        f = open_regular(zip_path, name=zip_path.name)
    except FileNotFoundError:
        raise BundleError(f"{zip_path} does not exist") from None
    except RunFileError as e:
        raise BundleError(f"refused: {e}") from None
    try:
        zf = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        f.close()
        raise BundleError(f"refused: {zip_path.name} is not a zip file ({e})") from None
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".import-"))  # hidden: list_runs skips it
    try:
        with f, zf:
            members, top = _members(zf, max_member_bytes, max_total_bytes, max_members)
            wanted = top or zip_path.stem
            budget = max_total_bytes
            for info, rel in members:
                try:
                    budget -= _extract(zf, info, tmp / rel, min(max_member_bytes, budget))
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as e:
                    # a CRC mismatch, a damaged stream, an unsupported compression method ...
                    why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                    raise BundleError(f"refused: {rel} could not be unpacked ({type(e).__name__}: {why})") from None
        try:
            read_config(tmp / "config.json", name="config.json")
            if (tmp / "metrics.jsonl").exists():
                check_log(tmp / "metrics.jsonl", max_bytes=max_log_bytes)
        except RunFileError as e:
            raise BundleError(f"refused: {e}") from None
        for _, rel in members:
            if rel.endswith(".npz"):
                _check_npz(tmp / rel, rel, max_member_bytes)
        if (tmp / "checkpoint.pt").exists():
            _check_checkpoint(tmp / "checkpoint.pt", max_member_bytes)
        (tmp / "snapshots").mkdir(exist_ok=True)
        status = _checked_status(tmp / "status.json", zip_path.name)
        (tmp / "status.json").write_text(json.dumps(status, indent=2, sort_keys=True))
        dest = _destination(root, wanted)
        os.replace(tmp, dest)  # dest is the empty folder we just claimed: replaced in one step
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    load_run(dest)  # the store reads it back like any other run
    return dest

