"""Opt-in download of the published data sets, verified by checksum, never leaving a partial file.

Nothing here runs unless called: :func:`download` is what ``--download`` and the Train page's
*Download* button call, and no loader calls it. What is fetched is the table of
:mod:`.releases` (URLs and MD5s copied from torchvision). For each data set:

1. files already in place (a kept file with the published MD5; an archive's unpacked files all
   present) are not fetched again;
2. the free disk space is checked against the download plus what it unpacks to;
3. each file is streamed into a private temporary folder inside the data root
   (``.hcl-download-*``), its MD5 computed on the way; a connection that breaks before the
   announced length (urllib3 enforces ``Content-Length``), an HTTP error, or an MD5 other than
   the published one ends the download with a :class:`DownloadError`;
4. an archive is unpacked there, member by member (regular files and folders only, relative
   paths without ``..``; at most twice the published unpacked size), and each unpacked file
   with a published MD5 is checked against it;
5. only then is each file moved into place with ``os.replace`` (atomic on one file system, which
   the temporary folder inside the data root guarantees); the temporary folder is removed
   whatever happened, Ctrl-C included.

Why not ``torchvision.datasets.utils.download_url``: it writes straight to the final name, so a
broken connection or a checksum mismatch leaves the damaged file in place (the mismatch raises
``RuntimeError("File not found or corrupted.")`` after writing it); on Python 3.11 its reads
through ``http.client`` accept a body cut short by the server without an error; it retries a
failed ``https`` URL over plain ``http``; and its progress goes only to its own tqdm bar. The
transfer here is ``requests``/``urllib3`` (streamed, length enforced), the rest the standard
library (``hashlib``, ``tarfile``).

``HCL_DATA_MIRROR=URL`` (or ``mirror=``) replaces the scheme and host of every URL, keeping its
path: ``http://127.0.0.1:8000/pub`` turns
``https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz`` into
``http://127.0.0.1:8000/pub/mnist/train-images-idx3-ubyte.gz``. ``HCL_DATA_CHECKSUMS=FILE.json``
(or ``checksums=``) replaces published MD5s, for a mirror that serves other files (and for tests
that run the command line or the app in another process): a JSON object of
``{file name or path in the archive: md5}``.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import socket
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit, urlunsplit

from .base import DataNotFoundError
from .progress import ProgressFn, Tracker
from .releases import RELEASES, Release, Remote

__all__ = ["CHECKSUMS_ENV", "MIRROR_ENV", "DownloadError", "download", "downloadable", "mirror_url", "needs_download"]

MIRROR_ENV = "HCL_DATA_MIRROR"
CHECKSUMS_ENV = "HCL_DATA_CHECKSUMS"
_CHUNK = 1 << 20
_USER_AGENT = "hardness-explorer (python-requests)"
_TMP_PREFIX = ".hcl-download-"
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM})


class DownloadError(DataNotFoundError):
    """Fetching a data set failed (network, server, checksum, disk); nothing partial was kept.

    A :class:`DataNotFoundError`: the files are still missing, and the message says why in one
    line and what to do.
    """


def downloadable(name: str) -> bool:
    """Whether data set ``name`` can be downloaded."""
    return name in RELEASES


def needs_download(name: str, root: str | os.PathLike[str] | None) -> bool:
    """Whether ``name`` can be downloaded and its loader does not find its files under ``root`` (for a button)."""
    if name not in RELEASES or root is None:
        return False
    from .loading import _LOADERS  # the loaders' own file finders decide what "present" means

    finder = _LOADERS[name].files
    try:
        if finder is not None:
            finder(Path(os.path.abspath(os.fspath(root))))
    except DataNotFoundError:
        return True
    return False


def mirror_url(url: str, mirror: str | None) -> str:
    """``url`` with its scheme and host replaced by ``mirror``'s, ``mirror``'s path prefixed to its path."""
    if not mirror:
        return url
    m = urlsplit(mirror)
    if m.scheme not in ("http", "https") or not m.netloc:
        raise ValueError(f"{MIRROR_ENV} must be an http:// or https:// URL with a host (e.g. http://127.0.0.1:8000 "
                         f"or https://mirror.example.org/datasets), got {mirror!r}")
    u = urlsplit(url)
    return urlunsplit((m.scheme, m.netloc, m.path.rstrip("/") + u.path, u.query, ""))


def download(
    name: str,
    root: str | os.PathLike[str],
    *,
    progress: ProgressFn | None = None,
    mirror: str | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> list[Path]:
    """Fetch data set ``name`` into ``root`` (created if needed); returns the files placed there.

    Args:
        name: a key of :data:`.releases.RELEASES` (mnist, fashion_mnist, cifar10, cifar100, stl10).
        root: the data root the loader reads (``--data-root``).
        progress: receives :class:`~.progress.Progress` reports of each download, extraction and
            checksum (e.g. :func:`~.progress.tqdm_progress`); None sends them to the callback
            installed with :func:`~.progress.reporting_to`, if any.
        mirror: replaces the host of every URL (see the module's docs); None reads
            ``HCL_DATA_MIRROR``; ``""`` uses the publishers' servers.
        checksums: MD5s that replace the published ones, keyed by a published file's name
            (``"cifar-10-python.tar.gz"``) or an unpacked file's path in its archive
            (``"cifar-10-batches-py/data_batch_1"``): for a mirror of other files, and for tests.
            When an archive's MD5 is replaced, its unpacked files are checked only against
            replaced MD5s (the published ones describe the published archive). None reads the
            JSON file named by ``HCL_DATA_CHECKSUMS``, if set.
        timeout: seconds to wait for a connection and for each read.

    Raises:
        DownloadError: one line, for an unreachable host, an HTTP error, a connection that
            breaks, a checksum mismatch, too little disk space or a file that cannot be written.
        ValueError: for a name that cannot be downloaded or a malformed mirror URL.
    """
    if name not in RELEASES:
        raise ValueError(f"data set {name!r} cannot be downloaded; these can: {', '.join(RELEASES)}")
    release = RELEASES[name]
    mirror = os.environ.get(MIRROR_ENV) if mirror is None else mirror
    for remote in release.files:
        mirror_url(remote.url, mirror)  # a malformed mirror fails before anything is written
    checksums = _checksums_from_env() if checksums is None else dict(checksums)
    root = Path(os.path.abspath(os.fspath(root)))
    todo = [r for r in release.files if not _in_place(r, release, root, checksums)]
    if not todo:
        return []
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"could not download {name}: {_os_reason(e, root)}") from e
    _check_space(name, root, release, todo, checksums)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root))
    except OSError as e:
        raise DownloadError(f"could not download {name}: {_os_reason(e, root)}") from e
    try:
        moves: list[tuple[Path, Path]] = []  # every file is fetched and verified before any is placed
        for remote in todo:
            url = mirror_url(remote.url, mirror)
            fetched = tmp / remote.filename
            expected = checksums.get(remote.filename, remote.md5)
            _fetch(name, url, fetched, expected, remote, timeout, progress, mirrored=bool(mirror))
            if remote.archive:
                overridden = remote.filename in checksums
                inner = {p: checksums.get(p, None if overridden else md5) for p, md5 in release.unpacked}
                inner.update({p: md5 for p, md5 in checksums.items() if "/" in p})
                unpacked = tmp / f"unpacked-{remote.filename}"
                moves += [(unpacked / rel, root / rel)
                          for rel in _unpack(name, fetched, unpacked, remote, release, inner, progress)]
                fetched.unlink()  # the archive is not kept: its files are
            else:
                moves.append((fetched, root / remote.into / remote.filename))
        return [_place(src, dest, name) for src, dest in moves]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# steps
# --------------------------------------------------------------------------------------------


def _checksums_from_env() -> dict[str, str]:
    path = os.environ.get(CHECKSUMS_ENV)
    if not path:
        return {}
    import json

    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{CHECKSUMS_ENV}={path} cannot be read as a JSON file ({e}): fix or unset it") from None
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) and len(v) == 32
                                              for k, v in table.items()):
        raise ValueError(f"{CHECKSUMS_ENV}={path} must hold a JSON object of {{file name: 32-digit MD5}}: fix or "
                         f"unset it")
    return table



def _md5_of(path: Path, progress: ProgressFn | None, label: str) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f, Tracker("verify", label, path.stat().st_size, progress=progress) as t:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            t.advance(len(chunk))
    return h.hexdigest()


def _in_place(remote: Remote, release: Release, root: Path, checksums: dict[str, str]) -> bool:
    """Whether ``remote`` needs no fetching: a kept file with the right MD5, or all of an archive's files present."""
    if remote.archive:
        return bool(release.unpacked) and all((root / p).is_file() for p, _ in release.unpacked)
    target = root / remote.into / remote.filename
    try:
        return target.is_file() and _md5_of(target, None, remote.filename) == checksums.get(remote.filename,
                                                                                             remote.md5)
    except OSError:
        return False


def _check_space(name: str, root: Path, release: Release, todo: list[Remote], checksums: dict[str, str]) -> None:
    """Refuse before fetching when the disk holding ``root`` cannot take the download and what it unpacks to."""
    known = [r for r in todo if r.filename not in checksums]  # a replaced file's size is unknown
    need = sum(r.size for r in known) + (release.disk_bytes if any(r.archive for r in known) else 0)
    free = shutil.disk_usage(root).free
    if need > free:
        raise DownloadError(f"could not download {name} into {root}: it needs {need / 1e9:.2f} GB of free disk space "
                            f"and {free / 1e9:.2f} GB are free; free some space or choose another data root")


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _fetch(name: str, url: str, dest: Path, md5: str, remote: Remote, timeout: float,
           progress: ProgressFn | None, *, mirrored: bool) -> None:
    """Stream ``url`` into ``dest``, computing its MD5; DownloadError unless complete and matching ``md5``."""
    import requests
    import urllib3

    host = _host(url)
    fix = (f"check that the mirror in {MIRROR_ENV} is running and serves the published files, or unset it to use "
           f"the publisher's server" if mirrored else "check the network connection and try again")
    h = hashlib.md5(usedforsecurity=False)
    done, total = 0, None
    try:
        with requests.get(url, stream=True, timeout=timeout,
                          headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}) as r:
            if r.status_code != 200:
                raise DownloadError(f"could not download {name}: {host} answered {r.status_code} {r.reason} for "
                                    f"{url}; {fix}")
            length = r.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            with open(dest, "wb") as f, Tracker("download", remote.filename, total or remote.size,
                                                progress=progress) as t:
                for chunk in r.raw.stream(_CHUNK, decode_content=False):
                    f.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    t.advance(len(chunk))
    except DownloadError:
        raise
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as e:
        if done or isinstance(e, (urllib3.exceptions.ProtocolError, requests.exceptions.ChunkedEncodingError)):
            of = f" of {total / 1e6:.1f}" if total else ""
            raise DownloadError(f"could not download {name}: the connection to {host} broke after "
                                f"{done / 1e6:.1f}{of} MB of {remote.filename} ({_net_reason(e, host, timeout)}); "
                                f"nothing was kept; try again") from None
        raise DownloadError(f"could not download {name}: {_net_reason(e, host, timeout)}; {fix}") from None
    except OSError as e:
        if e.filename is not None or e.errno in _DISK_ERRNOS:  # writing the temporary file
            raise DownloadError(f"could not download {name}: {_os_reason(e, dest.parent.parent)}") from None
        raise DownloadError(f"could not download {name}: {_net_reason(e, host, timeout)}; {fix}") from None
    if total is not None and done != total:
        raise DownloadError(f"could not download {name}: {host} sent {done} of the {total} bytes it announced for "
                            f"{remote.filename}; nothing was kept; try again")
    got = h.hexdigest()
    if got != md5:
        raise DownloadError(f"could not download {name}: {remote.filename} from {host} is not the published file "
                            f"(MD5 {got}, expected {md5}); nothing was kept; try again, or use another mirror")


def _net_reason(e: BaseException, host: str, timeout: float) -> str:
    """What went wrong on the network, in a few words, from the innermost cause that says."""
    seen: set[int] = set()
    todo: list[BaseException] = [e]
    while todo:
        x = todo.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, http.client.IncompleteRead):
            return "the server closed the connection before the announced end of the file"
        if isinstance(x, socket.gaierror):
            return f"the host name {host.split(':')[0]} was not found (no network, or a mistyped mirror)"
        if isinstance(x, ConnectionRefusedError) or getattr(x, "errno", None) == errno.ECONNREFUSED:
            return f"{host} refused the connection (nothing listens there)"
        if isinstance(x, (TimeoutError, socket.timeout)) or type(x).__name__ in ("ConnectTimeout", "ReadTimeout",
                                                                                  "ConnectTimeoutError",
                                                                                  "ReadTimeoutError"):
            return f"{host} did not answer within {timeout:g} s"
        if getattr(x, "errno", None) in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return f"{host} cannot be reached (no route to it: is the network down?)"
        if isinstance(x, ConnectionResetError):
            return f"{host} reset the connection"
        todo += [c for c in (x.__cause__, x.__context__, getattr(x, "reason", None), *getattr(x, "args", ()))
                 if isinstance(c, BaseException)]
    return f"{type(e).__name__} while talking to {host}"


def _os_reason(e: OSError, root: Path) -> str:
    """A disk error in one line, naming the data root rather than a temporary file."""
    from ..errors import Where, describe_os_error, one_line

    if e.filename is not None and _TMP_PREFIX in str(e.filename):
        e = OSError(e.errno, e.strerror)  # the temporary name means nothing to the user
    return one_line(describe_os_error(e, Where(path=str(root), flag="--data-root", doing="downloading")))


def _safe_member(member: tarfile.TarInfo) -> PurePosixPath | None:
    """The member's relative path if it is a regular file or folder inside the archive's root, else None."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or not path.parts or not (member.isfile() or member.isdir()):
        return None
    return path


def _unpack(name: str, archive: Path, into: Path, remote: Remote, release: Release, md5s: dict[str, str | None],
            progress: ProgressFn | None) -> list[str]:
    """Unpack the regular files of ``archive`` into ``into``, checking ``md5s``; returns their relative paths."""
    limit = 2 * release.disk_bytes + 10 * 2**20
    written, files = 0, []
    try:
        with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar, \
                Tracker("extract", remote.filename, archive.stat().st_size, progress=progress) as t:
            for member in tar:
                rel = _safe_member(member)
                if rel is None or member.isdir():
                    continue  # links, devices and paths leaving the archive are never written
                written += member.size
                if written > limit:
                    raise DownloadError(f"could not download {name}: {remote.filename} unpacks to more than "
                                        f"{limit / 1e9:.1f} GB, far more than the published data set; refused")
                target = into / Path(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                h = hashlib.md5(usedforsecurity=False)
                src = tar.extractfile(member)
                assert src is not None  # a regular file always has contents
                with src, open(target, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        t.advance(raw.tell() - t.done)
                expected = md5s.get(str(rel))
                if expected is not None and h.hexdigest() != expected:
                    raise DownloadError(f"could not download {name}: {rel} in {remote.filename} is not the published "
                                        f"file (MD5 {h.hexdigest()}, expected {expected}); nothing was kept; try "
                                        f"again, or use another mirror")
                files.append(str(rel))
    except (tarfile.TarError, EOFError, OSError) as e:
        if isinstance(e, OSError) and e.filename is not None:
            raise DownloadError(f"could not download {name}: {_os_reason(e, into)}") from None
        raise DownloadError(f"could not download {name}: {remote.filename} is not a readable .tar.gz archive "
                            f"({type(e).__name__}: {e}); nothing was kept; try again") from None
    missing = [p for p, md5 in md5s.items() if md5 is not None and p not in files]
    if missing:
        raise DownloadError(f"could not download {name}: {remote.filename} lacks {', '.join(missing)}; nothing was "
                            f"kept; try again, or use another mirror")
    return files


def _place(src: Path, dest: Path, name: str) -> Path:
    """Move ``src`` to ``dest`` atomically (same file system), creating ``dest``'s folder."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
    except OSError as e:
        raise DownloadError(f"could not download {name}: {_os_reason(e, dest.parent)}") from None
    return dest
