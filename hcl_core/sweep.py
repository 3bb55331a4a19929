"""Sweeps: a grid of runs (losses x betas x seeds), run in parallel, summarised over seeds.

``python -m hcl_core sweep --losses info_nce,hcl --betas 0,1,2 --seeds 0,1,2 --epochs 30``
expands the grid (:func:`expand_grid`: a loss that does not tilt (reads no ``beta``) runs once
per seed), trains every run with :func:`hcl_core.train.train` and writes, under
``<out>/<sweep-name>/``::

    sweep.json      the manifest: the grid, the base config, the command, one record per run
    summary.csv     one row per (loss, beta): n, then <metric>_mean and <metric>_std
    summary.md      the same table in Markdown, "mean ± std" cells
    <run folders>   one per run, exactly as ``train`` writes them (``store.list_runs`` reads
                    one nested level, so the runs also appear in the app's run lists)

Backends (every task calls :func:`run_task`, which calls ``train(config, root=...)``):

* ``local`` (default): ``--workers N`` spawned processes (``ProcessPoolExecutor``); with one
  worker the runs go one after another in this process. Each run gets
  ``threads = cores // workers`` torch threads unless ``--threads`` says otherwise, so
  workers x threads never exceeds the cores.
* ``ray``: one Ray task per run, on the cluster at ``--address`` or on a local Ray started for
  the sweep (``--workers`` CPUs). The ``hcl_core`` package is shipped to the workers
  (``runtime_env.py_modules``); the cluster's nodes need the same Python packages. A Ray
  that the caller initialised already is used as it is (its workers must be able to import
  ``hcl_core``: pass ``runtime_env={"py_modules": [...]}`` or start it in the project folder). A task on
  another host trains into a temporary folder and returns the run as a bundle
  (:mod:`hcl_core.bundle`), which the driver imports into the sweep folder, so the results land
  in the same store with or without a shared file system.

Statistics: the mean over finished seeds and the sample standard deviation (``ddof = 1``; NaN
when only one seed finished). Failed runs are counted in ``failed`` and left out of the means.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import re
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import FIELDS, ConfigError, RunConfig
from .registry import LOSSES
from .threads import set_process_threads

__all__ = [
    "DEFAULT_BETAS",
    "DEFAULT_LOSSES",
    "DEFAULT_SEEDS",
    "SUMMARY_METRICS",
    "SweepError",
    "add_sweep_parser",
    "expand_grid",
    "find_sweeps",
    "load_sweep",
    "read_manifest",
    "run_sweep",
    "run_task",
    "summarize",
    "summary_csv",
    "summary_markdown",
]

DEFAULT_LOSSES = ("info_nce", "dcl", "hcl", "supcon", "hard_supcon")
DEFAULT_BETAS = (0.0, 0.5, 1.0, 2.0, 4.0)
DEFAULT_SEEDS = (0, 1, 2)
#: The metrics summarised over seeds (keys of a run's summary), in table order.
SUMMARY_METRICS = ("linear_probe_acc", "knn_acc", "few_shot_probe_acc", "alignment", "uniformity",
                   "same_class_mass")
METRIC_HEADERS = {"linear_probe_acc": "linear probe", "knn_acc": "kNN", "few_shot_probe_acc": "few-shot",
                  "alignment": "alignment", "uniformity": "uniformity", "same_class_mass": "same-class mass"}
MANIFEST = "sweep.json"
MARKER = ".sweep-id"  # a random id: a Ray task that can read it writes straight into the folder
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
#: Config fields that never make two runs differ in what they measure (not grouping keys).
_NOT_GROUPING = ("seed", "name", "threads", "device")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
EXIT_USAGE = 2


class SweepError(ValueError):
    """A sweep cannot be set up or read: bad grid values, a used folder, a missing backend."""


# --------------------------------------------------------------------------------------------
# the grid
# --------------------------------------------------------------------------------------------


def parse_list(text: str, flag: str, kind: type) -> tuple:
    """``"0, 0.5,1"`` -> ``(0.0, 0.5, 1.0)``: comma-separated values, duplicates dropped, order kept.

    ``kind`` is ``str``, ``float`` or ``int`` (``"2.0"`` is accepted as 2). Raises
    :class:`SweepError` naming ``flag`` for an empty list or a value of the wrong type.
    """
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise SweepError(f"{flag} needs at least one value (comma-separated, e.g. {flag} 0,1,2)")
    out: list = []
    for item in items:
        value = item if kind is str else _number(item, flag, whole=kind is int)
        if value not in out:
            out.append(value)
    return tuple(out)


def _number(item: str, flag: str, *, whole: bool) -> float | int:
    try:
        number = float(item)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or (whole and not number.is_integer()):
        raise SweepError(f"{flag}: {item!r} is not {'a whole number' if whole else 'a finite number'}")
    return int(number) if whole else number


def has_beta(loss: str) -> bool:
    """Whether ``loss`` reads beta (so the sweep varies it)."""
    return LOSSES[loss].tilts


def check_losses(losses: Sequence[str]) -> None:
    """Raise :class:`SweepError` naming the first name that is not in the loss registry."""
    unknown = [loss for loss in losses if loss not in LOSSES]
    if unknown:
        raise SweepError(f"--losses: unknown loss {unknown[0]!r}; choose from {', '.join(LOSSES)}")


def expand_grid(base: RunConfig, losses: Sequence[str], betas: Sequence[float],
                seeds: Sequence[int]) -> list[RunConfig]:
    """Every run of the sweep, in order loss, beta, seed.

    A loss that reads ``beta`` runs once per (beta, seed); any other loss once
    per seed, with ``beta = 0`` stored (the value it ignores), so ``len`` is
    ``sum(len(betas) if has_beta(l) else 1 for l in losses) * len(seeds)``. Every other field
    comes from ``base``. Out-of-range values raise :class:`SweepError` naming the flag.
    """
    check_losses(losses)
    if not losses or not betas or not seeds:
        raise SweepError("a sweep needs at least one loss, one beta and one seed")
    configs = []
    for loss in losses:
        for beta in (betas if has_beta(loss) else (0.0,)):
            for seed in seeds:
                try:
                    configs.append(base.replace(loss=loss, beta=beta, seed=seed))
                except ConfigError as e:
                    flag = {"beta": "--betas", "seed": "--seeds"}.get(e.field, "--" + e.field.replace("_", "-"))
                    raise SweepError(f"{flag}: {e}") from None
    return configs


def group_key(config: RunConfig) -> tuple:
    """What a run measures apart from its seed: runs with equal keys are averaged together."""
    d = config.to_dict()  # a config normalises what its loss does not read
    return tuple((k, d[k]) for k in FIELDS if k not in _NOT_GROUPING)


# --------------------------------------------------------------------------------------------
# summary over seeds
# --------------------------------------------------------------------------------------------


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1); (nan, nan) for no values, std nan for one."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan, math.nan
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def summarize(runs: Iterable[Any], metrics: Sequence[str] = SUMMARY_METRICS) -> list[dict[str, Any]]:
    """One row per group of runs that differ only in seed (see :func:`group_key`).

    Args:
        runs: objects with ``.config`` (a RunConfig), ``.state`` and ``.summary`` (a dict), e.g.
            :class:`hcl_core.store.Run`.
        metrics: summary keys to average.

    Returns:
        Rows sorted by loss (registry order) then beta, each a dict with ``loss``, ``label``,
        ``beta`` (None for a loss without beta), every other config field that varies between
        rows, ``seeds`` (the finished seeds), ``n`` (their number), ``failed`` (runs of the group
        that did not finish), and ``<metric>_mean``, ``<metric>_std`` for each metric.
    """
    groups: dict[tuple, dict[str, Any]] = {}
    for run in runs:
        g = groups.setdefault(group_key(run.config), {"config": run.config, "done": [], "failed": 0})
        if run.state == "finished" and run.summary:
            g["done"].append(run)
        elif run.state in ("failed", "stopped", "interrupted"):
            g["failed"] += 1
    varying = _varying_fields([g["config"] for g in groups.values()])
    order = list(LOSSES)
    rows = []
    for g in groups.values():
        c: RunConfig = g["config"]
        row: dict[str, Any] = {"loss": c.loss, "label": LOSSES[c.loss].label,
                               "beta": c.beta if has_beta(c.loss) else None}
        row.update({k: getattr(c, k) if _reads(c, k) else None for k in varying})
        row["seeds"] = sorted(r.config.seed for r in g["done"])
        row["n"] = len(g["done"])
        row["failed"] = g["failed"]
        for m in metrics:
            row[f"{m}_mean"], row[f"{m}_std"] = _mean_std([r.summary.get(m, math.nan) for r in g["done"]])
        rows.append(row)
    rows.sort(key=lambda r: (order.index(r["loss"]) if r["loss"] in order else len(order),
                             -1.0 if r["beta"] is None else r["beta"], [str(r.get(k)) for k in varying]))
    return rows


def _reads(config: RunConfig, name: str) -> bool:
    """Whether the field ``name`` matters for ``config``'s loss (every field but the loss's unread ones)."""
    spec = LOSSES[config.loss]
    return spec.reads(name) if name in ("beta", "tau_plus", "detach_weights") else True


def _varying_fields(configs: Sequence[RunConfig]) -> list[str]:
    """Config fields (other than loss, beta and the non-grouping ones) that differ between configs.

    A field only counts where the loss reads it: info_nce next to hcl does not make tau_plus vary.
    """
    out = []
    for k in FIELDS:
        if k in (*_NOT_GROUPING, "loss", "beta"):
            continue
        if len({json.dumps(getattr(c, k)) for c in configs if _reads(c, k)}) > 1:
            out.append(k)
    return out


def _columns(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> list[str]:
    fixed = ["loss", "beta"]
    extra = [k for k in (rows[0] if rows else {}) if k in FIELDS and k not in fixed]
    return [*fixed, *extra, "n", "failed", *(f"{m}_{s}" for m in metrics for s in ("mean", "std"))]


def summary_csv(rows: Sequence[dict[str, Any]], metrics: Sequence[str] = SUMMARY_METRICS) -> str:
    """The rows as CSV text: full precision, empty cells for NaN and for beta of a loss without it."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    cols = _columns(rows, metrics)
    writer.writerow(cols)
    for row in rows:
        writer.writerow(["" if v is None or (isinstance(v, float) and math.isnan(v)) else v
                         for v in (row.get(c) for c in cols)])
    return buf.getvalue()


def format_mean_std(mean: float, std: float, digits: int = 3) -> str:
    """``"0.953 ± 0.004"``; only the mean when std is NaN (one seed), ``"–"`` when nothing finished."""
    if mean is None or math.isnan(mean):
        return "–"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def display_rows(rows: Sequence[dict[str, Any]], metrics: Sequence[str] = SUMMARY_METRICS) -> list[dict[str, str]]:
    """The rows as strings for a table: loss label, beta ("–" when unused), extra fields, n, mean ± std."""
    cols = _columns(rows, ())
    out = []
    for row in rows:
        d = {"loss": row["label"], "beta": "–" if row["beta"] is None else f"{row['beta']:g}"}
        d.update({k: "–" if row[k] is None else str(row[k]) for k in cols if k not in ("loss", "beta", "n", "failed")})
        d["seeds"] = f"{row['n']}" + (f" (+{row['failed']} failed)" if row["failed"] else "")
        d.update({METRIC_HEADERS.get(m, m): format_mean_std(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics})
        out.append(d)
    return out


def summary_markdown(rows: Sequence[dict[str, Any]], metrics: Sequence[str] = SUMMARY_METRICS) -> str:
    """A Markdown table of :func:`display_rows` (mean ± sample std over seeds)."""
    table = display_rows(rows, metrics)
    if not table:
        return "_no finished runs_\n"
    head = list(table[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if h in ("loss",) else "---:" for h in head) + "|"]
    lines += ["| " + " | ".join(r[h] for h in head) + " |" for r in table]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# reading sweeps back
# --------------------------------------------------------------------------------------------


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The sweep's ``sweep.json`` as a dict ({} if missing or unreadable)."""
    try:
        data = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def load_sweep(path: str | os.PathLike) -> tuple[list[Any], list[dict[str, Any]]]:
    """``(runs, rows)``: the run folders directly inside the sweep folder ``path`` and their summary.

    The rows are recomputed from the runs (:func:`summarize`), so a sweep still running or cut
    short reads fine. Folders that are not runs are skipped. Raises :class:`SweepError` if
    ``path`` is not a folder.
    """
    from .store import RunFileError, load_run

    path = Path(path)
    if not path.is_dir():
        raise SweepError(f"{path} is not a folder: pass a sweep folder (one holding {MANIFEST})")
    runs = []
    for p in sorted(path.iterdir()):
        if p.is_dir() and not p.name.startswith("."):
            with contextlib.suppress(RunFileError):
                runs.append(load_run(p))
    return runs, summarize(runs)


def find_sweeps(root: str | os.PathLike) -> list[Path]:
    """Sweep folders (holding ``sweep.json``) directly under ``root`` (and ``root`` itself), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [root] if (root / MANIFEST).is_file() else []
    with contextlib.suppress(OSError):
        found += [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()]

    def mtime(p: Path) -> float:
        try:
            return (p / MANIFEST).stat().st_mtime
        except OSError:
            return 0.0

    return sorted(found, key=mtime, reverse=True)


# --------------------------------------------------------------------------------------------
# running one task (in this process, a spawned worker, or a Ray worker)
# --------------------------------------------------------------------------------------------


def run_task(config: dict[str, Any], root: str, *, ship_back: bool = False,
             marker: str | None = None) -> dict[str, Any]:
    """Train one run of a sweep; never raises (a crash becomes ``state = "failed"``).

    Args:
        config: a ``RunConfig`` as a dict.
        root: the sweep folder the run is written to (an absolute path).
        ship_back: train into a temporary folder and return the run as a zip bundle
            (``result["bundle"]``, bytes) instead of writing under ``root``.
        marker: the sweep's id, also written to ``root/.sweep-id`` by the driver; when given,
            the task ships the run back unless it sees that file (so it runs on another node
            without a shared file system).

    Returns:
        ``{"config", "state", "message", "run_dir", "summary", "seconds", "host"}`` (+ ``"bundle"``).
    """
    from .train import train

    if marker is not None:
        ship_back = ship_back or not _sees_folder(root, marker)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"config": config, "run_dir": None, "summary": {}, "host": socket.gethostname()}
    try:
        cfg = RunConfig.from_dict(config)
        set_process_threads(cfg.threads)  # a task owns its worker process
        if ship_back:
            from .bundle import export_run

            with tempfile.TemporaryDirectory(prefix="hcl-sweep-") as tmp:
                result = train(cfg, root=tmp)
                zip_path = export_run(result.run_dir, Path(tmp) / "run.zip")
                out["bundle"] = zip_path.read_bytes()
                out["run_dir"] = result.run_dir.name
        else:
            result = train(cfg, root=root)
            out["run_dir"] = str(result.run_dir)
        out.update(state=result.state, message=result.message, summary=result.summary)
    except Exception as e:  # one bad run must not end the sweep: record it and go on
        out.update(state="failed", message=f"{type(e).__name__}: {e}")
    out["seconds"] = time.perf_counter() - t0
    return out


def _sees_folder(root: str, marker: str) -> bool:
    try:
        return (Path(root) / MARKER).read_text(encoding="utf-8") == marker
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# running the grid
# --------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What a finished (or interrupted) sweep produced."""

    folder: Path
    results: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    seconds: float
    interrupted: bool = False
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["state"] != "finished"]


OnResult = Callable[[int, int, dict[str, Any]], None]


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch threads each of ``workers`` processes may use so that workers x threads <= cores."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, workers))


def resolve_threads(requested: int, backend: str, workers: int) -> int:
    """Threads per run: ``requested`` if > 0, else 1 per Ray task or :func:`threads_per_worker` locally."""
    if requested:
        return requested
    return 1 if backend == "ray" else threads_per_worker(workers)


def _run_local(tasks: list[dict[str, Any]], root: Path, workers: int,
               on_result: Callable[[dict[str, Any]], None]) -> None:
    if workers == 1:
        for t in tasks:
            on_result(run_task(t, str(root)))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: a forked copy of a process that already ran torch can deadlock in its thread
    # pools. Each config carries its thread budget, which run_task applies to its process.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(run_task, t, str(root)): t for t in tasks}
        for fut in as_completed(futures):
            try:
                result = fut.result()
            except Exception as e:  # BrokenProcessPool: a worker was killed (out of memory, a signal)
                result = {"config": futures[fut], "state": "failed", "run_dir": None, "summary": {},
                          "message": f"its worker process died ({type(e).__name__}: {e})", "seconds": 0.0}
            on_result(result)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in list(getattr(pool, "_processes", {}).values()):  # stop the runs in flight
            with contextlib.suppress(Exception):
                proc.terminate()
        raise
    pool.shutdown(wait=True)


def _package_dir() -> str:
    return str(Path(__file__).resolve().parent)


def _run_ray(tasks: list[dict[str, Any]], root: Path, workers: int, threads: int, address: str | None,
             on_result: Callable[[dict[str, Any]], None]) -> None:
    try:
        import ray
    except ImportError:
        raise SweepError("the ray backend needs Ray: pip install -r requirements-ray.txt "
                         "(or use --backend local)") from None
    import logging

    started = False
    if not ray.is_initialized():  # else: the caller's Ray (a notebook, a test) is used as it is
        # py_modules ships this package to every worker, so no node needs the project checked out
        # (Ray accepts a local folder only here, at the job level).
        common = dict(runtime_env={"py_modules": [_package_dir()]}, log_to_driver=False,
                      logging_level=logging.WARNING)
        try:
            if address:
                ray.init(address=address, **common)
            else:
                ray.init(num_cpus=workers * threads, include_dashboard=False, **common)
        except Exception as e:  # ConnectionError, RuntimeError, ValueError ... depending on the version
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise SweepError(f"could not start or reach {where}: {type(e).__name__}: {e}") from None
        started = True
    remote = ray.remote(num_cpus=threads, max_retries=0)(run_task)
    # A task writes straight into the sweep folder when it can see it (this host or a shared file
    # system), else it returns a bundle that is imported here.
    marker = os.urandom(8).hex()
    atomic_text(root / MARKER, marker)
    pending = [remote.remote(t, str(root), marker=marker) for t in tasks]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            on_result(_land(ray.get(done[0]), root))
    except BaseException:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


def _land(result: dict[str, Any], root: Path) -> dict[str, Any]:
    """Import a run that came back as a bundle (a task on another host) into the sweep folder."""
    data = result.pop("bundle", None)
    if data is None:
        return result
    from .bundle import import_bundle

    fd, tmp = tempfile.mkstemp(dir=root, prefix=".bundle-", suffix=".zip")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        result["run_dir"] = str(import_bundle(tmp, root))
    except (OSError, ValueError) as e:
        result.update(state="failed", message=f"the run came back but could not be stored: {e}")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return result


def _task_record(result: dict[str, Any]) -> dict[str, Any]:
    c = result["config"]
    return {"loss": c["loss"], "beta": c["beta"] if has_beta(c["loss"]) else None, "seed": c["seed"],
            "state": result["state"], "message": result.get("message", ""),
            "run_dir": Path(result["run_dir"]).name if result.get("run_dir") else None,
            "seconds": round(result.get("seconds", 0.0), 2), "host": result.get("host")}


def run_sweep(
    configs: Sequence[RunConfig],
    folder: str | os.PathLike,
    *,
    backend: str = "local",
    workers: int = 1,
    address: str | None = None,
    manifest: dict[str, Any] | None = None,
    on_result: OnResult | None = None,
) -> SweepResult:
    """Train every config into ``folder`` and write the manifest and the summary files there.

    Args:
        configs: the runs (see :func:`expand_grid`); a config with ``threads = 0`` is given
            :func:`threads_per_worker` threads.
        folder: the sweep folder (created; must not hold runs already).
        backend: ``"local"`` (processes on this machine) or ``"ray"``.
        workers: processes (local) or CPUs of a local Ray started for the sweep.
        address: a Ray cluster to use instead of starting one (``ray`` only).
        manifest: extra entries for ``sweep.json`` (the grid, the command line ...).
        on_result: called as ``on_result(done, total, result)`` after each run.

    Returns:
        A :class:`SweepResult`. A KeyboardInterrupt (Ctrl-C) stops the runs in flight; the result
        then holds what finished, with ``interrupted = True``.

    Call it from a command line or a plain script: the local pool starts its workers with
    "spawn", which re-imports the caller's ``__main__``; inside a Streamlit script (whose
    ``__main__`` is the page) start ``python -m hcl_core sweep`` as a subprocess instead.
    """
    if backend not in ("local", "ray"):
        raise SweepError(f"backend must be 'local' or 'ray', got {backend!r}")
    if workers < 1:
        raise SweepError(f"--workers must be >= 1, got {workers}")
    folder = Path(folder).resolve()  # absolute: worker processes and Ray tasks run elsewhere
    folder.mkdir(parents=True, exist_ok=True)
    threads = resolve_threads(max((c.threads for c in configs), default=0), backend, workers)
    tasks = [(c if c.threads else c.replace(threads=threads)).to_dict() for c in configs]
    info = dict(manifest or {})
    info.update(backend=backend, workers=workers, address=address, threads=threads, total=len(tasks),
                started=time.time(), state="running", runs=[])
    atomic_json(folder / MANIFEST, info)
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def collect(result: dict[str, Any]) -> None:
        results.append(result)
        info["runs"].append(_task_record(result))
        atomic_json(folder / MANIFEST, info)
        if on_result is not None:
            on_result(len(results), len(tasks), result)

    interrupted = False
    try:
        if backend == "local":
            _run_local(tasks, folder, workers, collect)
        else:
            _run_ray(tasks, folder, workers, threads, address, collect)
    except KeyboardInterrupt:
        interrupted = True
    seconds = time.perf_counter() - t0
    _, rows = load_sweep(folder)
    paths = {"csv": folder / SUMMARY_CSV, "md": folder / SUMMARY_MD}
    atomic_text(paths["csv"], summary_csv(rows))
    atomic_text(paths["md"], summary_markdown(rows))
    info.update(state="interrupted" if interrupted else "finished", ended=time.time(), seconds=round(seconds, 2))
    atomic_json(folder / MANIFEST, info)
    return SweepResult(folder, results, rows, seconds, interrupted, paths)


def atomic_text(path: Path, text: str) -> None:
    from .store import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_json(path: Path, obj: Any) -> None:
    from .store import atomic_write_json

    atomic_write_json(path, obj)


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------


class SweepProgress:
    """Runs done on stderr: a redrawn bar on a terminal, one line per finished run otherwise."""

    def __init__(self, total: int, stream=None, width: int = 24):
        self.stream = stream or sys.stderr
        self.total = total
        self.width = width
        self.tty = self.stream.isatty()
        self.t0 = time.perf_counter()

    def start(self, folder: Path, backend: str, workers: int, threads: int) -> None:
        print(f"sweep of {self.total} runs -> {folder} ({backend}, {workers} worker(s) x {threads} thread(s))",
              file=self.stream)
        self._draw(0, "")

    def __call__(self, done: int, total: int, result: dict[str, Any]) -> None:
        c = result["config"]
        beta = f" β={c['beta']:g}" if has_beta(c["loss"]) else ""
        s = result.get("summary") or {}
        if result["state"] == "finished":
            what = f"linear {s.get('linear_probe_acc', math.nan):.3f}  kNN {s.get('knn_acc', math.nan):.3f}"
        else:
            what = f"{result['state'].upper()}: {result.get('message', '')[:120]}"
        line = f"{c['loss']}{beta} seed {c['seed']}: {what}  ({result.get('seconds', 0):.1f} s)"
        if self.tty:
            self.stream.write("\r\033[K")
        print(f"[{done:>{len(str(total))}}/{total}] {line}", file=self.stream)
        self._draw(done, line)

    def _draw(self, done: int, _line: str) -> None:
        if not self.tty:
            return
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / done * (self.total - done) if done else math.nan
        frac = done / max(self.total, 1)
        bar = "#" * int(frac * self.width)
        eta_text = "" if math.isnan(eta) else f" ETA {_clock(eta)}"
        self.stream.write(f"\r[{bar:<{self.width}}] {done}/{self.total} runs  {_clock(elapsed)}{eta_text} ")
        self.stream.flush()

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"


def sweep_command(manifest: dict[str, Any]) -> str:
    """The ``python -m hcl_core sweep ...`` line that reproduces a sweep's grid and base config."""
    base = manifest.get("base_config") or {}
    default = RunConfig().to_dict()
    parts = ["python", "-m", "hcl_core", "sweep",
             "--losses", ",".join(manifest.get("losses", [])),
             "--betas", ",".join(f"{b:g}" for b in manifest.get("betas", [])),
             "--seeds", ",".join(str(s) for s in manifest.get("seeds", []))]
    for k, v in base.items():
        if k in ("loss", "beta", "seed") or k not in default or v == default[k]:
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            parts.append(flag if v else "--no-" + k.replace("_", "-"))
        else:
            parts += [flag, "none" if v is None else str(v)]
    return shlex.join(parts)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def add_sweep_parser(sub: Any, add_config_flags: Callable[..., None],
                     config_from_args: Callable[..., RunConfig]) -> argparse.ArgumentParser:
    """Add ``sweep`` to the CLI's sub-parsers: every RunConfig flag but loss/beta/seed, plus the grid."""
    from .store import DEFAULT_ROOT

    # allow_abbrev=False: "--loss hcl" must be an error, not a silent abbreviation of --losses.
    p = sub.add_parser("sweep", allow_abbrev=False,
                       help="train a grid of runs (losses x betas x seeds) and summarise it",
                       description="Train every loss x beta x seed (a loss without beta once per seed) and "
                       "write a summary table (mean and std over seeds) as CSV and Markdown.")
    p.add_argument("--losses", default=",".join(DEFAULT_LOSSES),
                   help=f"comma-separated losses, of {', '.join(LOSSES)} [default {','.join(DEFAULT_LOSSES)}]")
    p.add_argument("--betas", default=",".join(f"{b:g}" for b in DEFAULT_BETAS),
                   help="comma-separated hardness values, used by losses that read beta "
                   f"[0 to 20; default {','.join(f'{b:g}' for b in DEFAULT_BETAS)}]")
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)),
                   help=f"comma-separated seeds [default {','.join(map(str, DEFAULT_SEEDS))}]")
    add_config_flags(p, sweepable=("loss", "beta", "seed"))
    p.add_argument("--out", default=str(DEFAULT_ROOT), help="folder holding the runs [default models]")
    p.add_argument("--sweep-name", default=None,
                   help="name of the sweep folder under --out [default sweep-<dataset>-<date>-<time>]")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: processes on this machine; ray: Ray tasks [default local]")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="parallel runs: local processes, or CPUs of a local Ray [default min(2, cores)]")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (e.g. ray://head:10001 or auto); without it a local Ray "
                   "is started for the sweep")
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    p.set_defaults(func=lambda args: cmd_sweep(args, config_from_args))
    return p


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _sweep_folder(out: str, name: str | None, dataset: str) -> Path:
    if name is None:
        name = f"sweep-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not _SAFE_NAME.match(name):
        raise SweepError(f"--sweep-name {name!r}: use letters, digits, '_', '-' and '.' (at most 100)")
    folder = Path(out) / name
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise SweepError(f"{folder} already exists and is not empty: choose another --sweep-name")
    return folder


def cmd_sweep(args: argparse.Namespace, config_from_args: Callable[..., RunConfig]) -> int:
    """``python -m hcl_core sweep``: see the module docstring. Exit 0 all finished, 1 some failed, 2 bad input."""
    try:
        losses = parse_list(args.losses, "--losses", str)
        check_losses(losses)
        betas = parse_list(args.betas, "--betas", float)
        seeds = parse_list(args.seeds, "--seeds", int)
        base = config_from_args(args, loss=losses[0], beta=0.0, seed=seeds[0])
        configs = expand_grid(base, losses, betas, seeds)
        if args.address and args.backend != "ray":
            raise SweepError("--address is only used with --backend ray")
        folder = _sweep_folder(args.out, args.sweep_name, base.dataset)
        if args.backend == "local":
            _check_data(base)
    except (SweepError, ConfigError) as e:
        return _fail(str(e))
    workers = args.workers or min(2, os.cpu_count() or 1)
    manifest = {"name": folder.name, "created": time.time(), "losses": list(losses), "betas": list(betas),
                "seeds": list(seeds), "base_config": base.to_dict(), "argv": sys.argv[1:]}
    manifest["command"] = sweep_command(manifest)
    progress = None if args.quiet else SweepProgress(len(configs))
    if progress is not None:
        progress.start(folder, args.backend, workers, resolve_threads(base.threads, args.backend, workers))
    try:
        result = run_sweep(configs, folder, backend=args.backend, workers=workers, address=args.address,
                           manifest=manifest, on_result=progress)
    except SweepError as e:
        return _fail(str(e))
    finally:
        if progress is not None:
            progress.end()
    if result.interrupted:
        print(f"interrupted: {len(result.results)} of {len(configs)} runs came back; "
              f"their summary is in {result.paths['csv']}", file=sys.stderr)
    print(result.paths["md"].read_text(encoding="utf-8"), end="")
    print(json.dumps({"summary": str(result.paths["csv"]), "summary_md": str(result.paths["md"]),
                      "sweep_dir": str(folder), "runs": len(result.results),
                      "finished": len(result.results) - len(result.failed), "failed": len(result.failed),
                      "seconds": round(result.seconds, 2)}))
    return 130 if result.interrupted else 1 if result.failed else 0


def _check_data(config: RunConfig) -> None:
    """Fail fast (once, not once per run) when the data set's files are missing."""
    from .data import DataNotFoundError, load_dataset

    try:
        load_dataset(config.dataset, config.data_root, max_train=config.max_train,
                     synthetic_overlap=config.synthetic_overlap)
    except (DataNotFoundError, ValueError) as e:
        raise SweepError(str(e)) from None
