"""Sweeps launched from the app: ``python -m hcl_core sweep`` as supervised subprocesses.

A sweep starts its own worker processes (a "spawn" pool or Ray), which must not be children of a
Streamlit script thread; it also has to outlive a browser tab. So the app starts the very
command a user would type, in its own process group, and follows it through the manifest
(``sweep.json``) the command rewrites after every run. Stopping sends SIGINT to the group: the
command's Ctrl-C handling stops the runs in flight and records the sweep as interrupted, keeping
what finished.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import FIELDS, RunConfig
from .registry import LOSSES

__all__ = ["SweepLaunch", "SweepRunner", "sweep_arguments"]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Fields the grid sets itself, or that only name a run.
_GRID_FIELDS = ("loss", "beta", "seed", "name")


def sweep_arguments(base: RunConfig, *, losses: Sequence[str], betas: Sequence[float], seeds: Sequence[int],
                    out: str | os.PathLike, name: str, workers: int = 1) -> list[str]:
    """The ``python -m hcl_core sweep`` arguments for a grid on ``base``'s other fields.

    Raises ``ValueError`` naming the bad part (an unknown loss, no seeds, an unsafe folder name).
    """
    unknown = [loss for loss in losses if loss not in LOSSES]
    if unknown or not losses:
        raise ValueError(f"losses: choose some of {', '.join(LOSSES)}" + (f" (not {unknown[0]!r})" if unknown else ""))
    if not seeds:
        raise ValueError("seeds: give at least one seed")
    if any(LOSSES[loss].tilts for loss in losses) and not betas:
        raise ValueError("betas: give at least one β for the losses that read it")
    if not _SAFE_NAME.match(name):
        raise ValueError(f"sweep name {name!r}: use letters, digits, '.', '_' or '-' (at most 100)")
    args = ["--losses", ",".join(losses), "--betas", ",".join(f"{b:g}" for b in betas) or "0",
            "--seeds", ",".join(str(s) for s in seeds)]
    defaults = RunConfig()
    for key in FIELDS:
        if key in _GRID_FIELDS:
            continue
        value = base.given(key)
        if value == getattr(defaults, key) or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + key.replace("_", "-"))
        else:
            args += [flag, str(value)]
    return [*args, "--out", str(out), "--sweep-name", name, "--workers", str(workers), "--quiet"]


@dataclass
class SweepLaunch:
    """One sweep started from the app."""

    name: str
    folder: Path
    command: list[str]
    proc: subprocess.Popen = field(repr=False)
    started: float = field(default_factory=time.time)
    log: list[str] = field(default_factory=list, repr=False)

    @property
    def active(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    @property
    def shell_command(self) -> str:
        return "python " + " ".join(shlex.quote(a) for a in self.command[1:])


class SweepRunner:
    """Starts and stops sweeps as subprocesses; one per app process, shared by every tab."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._lock = threading.Lock()
        self._launches: dict[str, SweepLaunch] = {}

    def start(self, base: RunConfig, *, losses: Sequence[str], betas: Sequence[float], seeds: Sequence[int],
              name: str, workers: int = 1) -> SweepLaunch:
        """Start a sweep into ``root/name``; raises ``ValueError`` for a bad grid or a name in use."""
        folder = self.root / name
        with self._lock:
            if name in self._launches and self._launches[name].active:
                raise ValueError(f"a sweep named {name!r} is already running")
            if folder.exists():
                raise ValueError(f"the folder {folder} exists already: choose another sweep name")
            command = [sys.executable, "-m", "hcl_core", "sweep",
                       *sweep_arguments(base, losses=losses, betas=betas, seeds=seeds, out=self.root, name=name,
                                        workers=workers)]
            proc = subprocess.Popen(command, cwd=_PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True)
            launch = SweepLaunch(name, folder, command, proc)
            self._launches[name] = launch
        threading.Thread(target=self._drain, args=(launch,), name=f"sweep-{name}-stderr", daemon=True).start()
        return launch

    @staticmethod
    def _drain(launch: SweepLaunch) -> None:
        for line in launch.proc.stderr:
            launch.log.append(line.rstrip())
            del launch.log[:-20]

    def launches(self) -> list[SweepLaunch]:
        with self._lock:
            return sorted(self._launches.values(), key=lambda s: s.started, reverse=True)

    def stop(self, name: str, timeout: float = 10.0) -> None:
        """Ctrl-C the sweep (its runs in flight stop, what finished is kept), then kill if it hangs."""
        with self._lock:
            launch = self._launches.get(name)
        if launch is None or not launch.active:
            return
        os.killpg(launch.proc.pid, signal.SIGINT)
        try:
            launch.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(launch.proc.pid, signal.SIGKILL)
            launch.proc.wait(5)

    def shutdown(self) -> None:
        for launch in self.launches():
            self.stop(launch.name)
