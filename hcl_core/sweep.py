"""Sweeps: a grid of runs (losses x betas x seeds), trained by a backend, summarised over seeds.

:func:`expand_grid` lists the runs (a loss that does not tilt, i.e. reads no ``beta``, runs once
per seed); :func:`run_sweep` trains them with :func:`hcl_core.backends.run_tasks` (processes on
this machine or Ray tasks) and writes, under the sweep folder::

    sweep.json      the manifest: the grid, the base config, the command, one record per run
    summary.csv     one row per (loss, beta): n, failed, then <metric>_mean and <metric>_std
    summary.md      the same table in Markdown, "mean ± std" cells
    <run folders>   one per run, exactly as ``train`` writes them (``store.list_runs`` reads
                    one nested level, so the runs also appear in the app's run lists)

Statistics (:func:`summarize`): the mean over the finished seeds and the sample standard
deviation (``ddof = 1``; NaN when only one seed finished). Runs that failed, stopped or were
interrupted are counted in ``failed`` and left out of the means. The command line is
``python -m hcl_core sweep`` (:mod:`hcl_core.cli`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import FIELDS, ConfigError, RunConfig
from .registry import LOSSES, METRICS
from .registry import SUMMARY_METRICS as REGISTRY_SUMMARY

__all__ = [
    "DEFAULT_BETAS",
    "DEFAULT_LOSSES",
    "DEFAULT_SEEDS",
    "MANIFEST",
    "SUMMARY_METRICS",
    "SweepError",
    "SweepResult",
    "display_rows",
    "expand_grid",
    "find_sweeps",
    "format_mean_std",
    "grid_base",
    "group_key",
    "load_sweep",
    "parse_list",
    "read_manifest",
    "run_sweep",
    "summarize",
    "summary_csv",
    "summary_markdown",
]

DEFAULT_LOSSES = ("info_nce", "dcl", "hcl", "supcon", "hard_supcon")
DEFAULT_BETAS = (0.0, 0.5, 1.0, 2.0, 4.0)
DEFAULT_SEEDS = (0, 1, 2)
#: The metrics summarised over seeds (keys of :data:`hcl_core.registry.METRICS`), in table
#: order: the two probes a sweep is usually read by first, then every other metric.
SUMMARY_METRICS = ("linear_probe_acc", "knn_acc",
                   *(k for k in REGISTRY_SUMMARY if k not in ("linear_probe_acc", "knn_acc")))
MANIFEST = "sweep.json"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
#: Config fields the grid sets (the others are shared by every run).
_GRID = ("loss", "beta", "seed")
#: Config fields that never make two runs differ in what they measure (not grouping keys).
_NOT_GROUPING = ("seed", "name", "threads", "device")
#: Run states that count as "did not finish" in a group (a running run counts as neither).
_FAILED_STATES = ("failed", "stopped", "interrupted")


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


def check_losses(losses: Sequence[str]) -> None:
    """Raise :class:`SweepError` naming the first name that is not in the loss registry."""
    unknown = [loss for loss in losses if loss not in LOSSES]
    if unknown:
        raise SweepError(f"--losses: unknown loss {unknown[0]!r}; choose from {', '.join(LOSSES)}")


def expand_grid(base: RunConfig | Mapping[str, Any], losses: Sequence[str], betas: Sequence[float],
                seeds: Sequence[int]) -> list[RunConfig]:
    """Every run of the sweep, in order loss, beta, seed.

    A loss that tilts (``LOSSES[loss].tilts``: it reads ``beta``) runs once per (beta, seed);
    any other loss once per seed, with ``beta = 0`` stored (the value it ignores), so ``len`` is
    ``sum(len(betas) if LOSSES[l].tilts else 1 for l in losses) * len(seeds)``.

    Every other field comes from ``base``: the values the user gave (a mapping, e.g. flags as
    text) or a RunConfig. Each run is built from these values and its own loss, so a field that
    one loss normalises away (``tau_plus`` of info_nce) still reaches the losses that read it.
    Values out of range raise :class:`SweepError` naming the flag.
    """
    check_losses(losses)
    if not losses or not betas or not seeds:
        raise SweepError("a sweep needs at least one loss, one beta and one seed")
    values = dict(base) if isinstance(base, Mapping) else base.to_dict()
    for k in _GRID:
        values.pop(k, None)
    configs = []
    for loss in losses:
        for beta in (betas if LOSSES[loss].tilts else (0.0,)):
            for seed in seeds:
                try:
                    configs.append(RunConfig(**values, loss=loss, beta=beta, seed=seed))
                except ConfigError as e:
                    flag = {"beta": "--betas", "seed": "--seeds"}.get(e.field, "--" + e.field.replace("_", "-"))
                    raise SweepError(f"{flag}: {e}") from None
    return configs


def grid_base(configs: Sequence[RunConfig]) -> dict[str, Any]:
    """The fields the runs of a grid share (all but loss, beta and seed), as the runs that read them have them.

    A field no loss of the grid reads keeps its default, so the result holds what the user chose,
    not what one loss normalised (see :func:`expand_grid`).
    """
    default = RunConfig()
    out = {}
    for k in FIELDS:
        if k in _GRID:
            continue
        readers = [c for c in configs if _reads(c, k)]
        out[k] = getattr(readers[0], k) if readers else getattr(default, k)
    return out


def group_key(config: RunConfig) -> tuple:
    """What a run measures apart from its seed: runs with equal keys are averaged together."""
    d = config.to_dict()  # a config normalises what its loss does not read
    return tuple((k, d[k]) for k in FIELDS if k not in _NOT_GROUPING)


# --------------------------------------------------------------------------------------------
# summary over seeds
# --------------------------------------------------------------------------------------------


def _finite(value: Any) -> float:
    """A summary value as a float; NaN for anything that is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


def summarize(runs: Iterable[Any], metrics: Sequence[str] = SUMMARY_METRICS) -> list[dict[str, Any]]:
    """One row per group of runs that differ only in seed (see :func:`group_key`).

    Args:
        runs: objects with ``.config`` (a RunConfig), ``.state`` and ``.summary`` (a dict), e.g.
            :class:`hcl_core.store.Run`.
        metrics: summary keys to average.

    Returns:
        Rows sorted by loss (registry order) then beta, each a dict with ``loss``, ``label``,
        ``beta`` (None for a loss that does not tilt), every other config field that varies
        between rows, ``seeds`` (the finished seeds), ``n`` (their number), ``failed`` (runs of
        the group that failed, stopped or were interrupted), and ``<metric>_mean``,
        ``<metric>_std`` for each metric: pandas' ``mean`` and ``std`` (``ddof = 1``) over the
        finished runs' finite values.
    """
    import pandas as pd

    groups: dict[tuple, int] = {}  # group key -> group number, in order of first appearance
    configs: list[RunConfig] = []  # the first config of each group
    records = []
    for run in runs:
        group = groups.setdefault(group_key(run.config), len(groups))
        if group == len(configs):
            configs.append(run.config)
        done = run.state == "finished" and bool(run.summary)
        record = {"group": group, "done": done, "failed": run.state in _FAILED_STATES,
                  "seed": run.config.seed if done else math.nan}
        record.update({m: _finite(run.summary.get(m)) if done else math.nan for m in metrics})
        records.append(record)
    if not records:
        return []
    table = pd.DataFrame.from_records(records, columns=["group", "done", "failed", "seed", *metrics])
    stats = table.groupby("group", sort=True).agg(
        n=("done", "sum"), failed=("failed", "sum"), seeds=("seed", lambda s: sorted(int(v) for v in s.dropna())),
        **{f"{m}_{stat}": (m, stat) for m in metrics for stat in ("mean", "std")},
    )
    varying = _varying_fields(configs)
    rows = []
    for group, c in enumerate(configs):
        g = stats.loc[group]
        row: dict[str, Any] = {"loss": c.loss, "label": LOSSES[c.loss].label,
                               "beta": c.beta if LOSSES[c.loss].tilts else None}
        row.update({k: getattr(c, k) if _reads(c, k) else None for k in varying})
        row.update(seeds=list(g["seeds"]), n=int(g["n"]), failed=int(g["failed"]))
        row.update({f"{m}_{stat}": float(g[f"{m}_{stat}"]) for m in metrics for stat in ("mean", "std")})
        rows.append(row)
    order = list(LOSSES)
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
    import pandas as pd

    # object dtype: every cell is written as Python writes it ("1.0", "2", "True"), none converted
    frame = pd.DataFrame(list(rows), columns=_columns(rows, metrics), dtype=object)
    return frame.to_csv(index=False, lineterminator="\n", na_rep="")


def format_mean_std(mean: float, std: float, digits: int = 3) -> str:
    """``"0.953 ± 0.004"``; only the mean when std is NaN (one seed), ``"–"`` when nothing finished."""
    if mean is None or math.isnan(mean):
        return "–"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def display_rows(rows: Sequence[dict[str, Any]], metrics: Sequence[str] = SUMMARY_METRICS) -> list[dict[str, str]]:
    """The rows as strings for a table: loss label, beta ("–" when unused), extra fields, n, mean ± std.

    Metric columns are headed by ``METRICS[key].short``.
    """
    cols = _columns(rows, ())
    out = []
    for row in rows:
        d = {"loss": row["label"], "beta": "–" if row["beta"] is None else f"{row['beta']:g}"}
        d.update({k: "–" if row[k] is None else str(row[k]) for k in cols if k not in ("loss", "beta", "n", "failed")})
        d["seeds"] = f"{row['n']}" + (f" (+{row['failed']} failed)" if row["failed"] else "")
        d.update({_header(m): format_mean_std(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics})
        out.append(d)
    return out


def _header(metric: str) -> str:
    return METRICS[metric].short if metric in METRICS else metric


def summary_markdown(rows: Sequence[dict[str, Any]], metrics: Sequence[str] = SUMMARY_METRICS) -> str:
    """A Markdown table of :func:`display_rows` (mean ± sample std over seeds)."""
    table = display_rows(rows, metrics)
    if not table:
        return "_no finished runs_\n"
    head = list(table[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if h == "loss" else "---:" for h in head) + "|"]
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


def _task_record(result: dict[str, Any]) -> dict[str, Any]:
    c = result["config"]
    return {"loss": c["loss"], "beta": c["beta"] if LOSSES[c["loss"]].tilts else None, "seed": c["seed"],
            "state": result["state"], "message": result.get("message", ""),
            "run_dir": Path(result["run_dir"]).name if result.get("run_dir") else None,
            "seconds": round(result.get("seconds", 0.0), 2), "host": result.get("host"),
            "node": result.get("node"), "device": result.get("device"), "shipped": result.get("shipped", False)}


def run_sweep(
    configs: Sequence[RunConfig],
    folder: str | os.PathLike,
    *,
    backend: str = "local",
    workers: int = 1,
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
    retries: int = 2,
    manifest: dict[str, Any] | None = None,
    on_ready: Callable[[], None] | None = None,
    on_result: OnResult | None = None,
) -> SweepResult:
    """Train every config into ``folder`` and write the manifest and the summary files there.

    Args:
        configs: the runs (see :func:`expand_grid`); a config with ``threads = 0`` is given the
            threads of the backend's plan (:func:`hcl_core.backends.plan_resources`).
        folder: the sweep folder (created once the backend is ready; must not hold runs already).
        backend, workers, address, cpus_per_run, gpus_per_run, retries: where and how the runs
            go, see :func:`hcl_core.backends.run_tasks`.
        manifest: extra entries for ``sweep.json`` (the grid, the command line ...).
        on_ready: called once the backend is ready and the folder exists, before the first run.
        on_result: called as ``on_result(done, total, result)`` after each run.

    Returns:
        A :class:`SweepResult`. A KeyboardInterrupt (Ctrl-C) stops the runs in flight; the result
        then holds what finished, with ``interrupted = True``.

    Call it from a command line or a plain script: the local pool starts its workers with
    "spawn", which re-imports the caller's ``__main__``; inside a Streamlit script (whose
    ``__main__`` is the page) start ``python -m hcl_core sweep`` as a subprocess instead.
    """
    from .backends import plan_resources, run_tasks

    plan = plan_resources(backend, workers=workers, threads=max((c.threads for c in configs), default=0),
                          cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                          devices={c.device for c in configs})
    folder = Path(folder).resolve()  # absolute: worker processes and Ray tasks run elsewhere
    tasks = [(c if c.threads else c.replace(threads=plan.threads)).to_dict() for c in configs]
    info = dict(manifest or {})
    info.update(backend=backend, workers=workers, address=address, threads=plan.threads, cpus_per_run=plan.cpus,
                gpus_per_run=plan.gpus, total=len(tasks), state="running", runs=[])
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    ready: list[bool] = []

    def start() -> None:  # the backend is ready: only now does the sweep folder appear
        ready.append(True)
        info["started"] = time.time()
        folder.mkdir(parents=True, exist_ok=True)
        atomic_json(folder / MANIFEST, info)
        if on_ready is not None:
            on_ready()

    def collect(result: dict[str, Any]) -> None:
        results.append(result)
        info["runs"].append(_task_record(result))
        atomic_json(folder / MANIFEST, info)
        if on_result is not None:
            on_result(len(results), len(tasks), result)

    interrupted = False
    try:
        run_tasks(tasks, folder, plan=plan, backend=backend, workers=workers, address=address, retries=retries,
                  on_ready=start, on_result=collect)
    except KeyboardInterrupt:
        if not ready:  # stopped before the backend was ready: there is nothing to summarise
            raise
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
