"""``python -m hcl_core train|sweep|list|show|export|import``: the same runs as the app, headless.

Every ``RunConfig`` field is a flag (``--tau-plus`` for ``tau_plus``). ``train`` draws a
progress bar on stderr and prints, as the last line of stdout, one JSON object with the
results; ``sweep`` trains a grid (:mod:`hcl_core.sweep`) on a backend (:mod:`hcl_core.backends`).

Exit codes, the same for every subcommand: 0 done, 1 a run failed, 2 a user error (a bad
flag, a missing or corrupt file, a full or read-only disk, too little memory ...: one line on
stderr, :mod:`hcl_core.errors`), 130 stopped with Ctrl-C (one line ``stopped: ...``). Anything
else is a bug and keeps its traceback.

Importing this module and ``list`` load no torch: the subcommands that train import it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .config import FIELDS, RunConfig
from .errors import Where, describe_os_error, one_line, user_message
from .registry import LOSSES, METRICS

__all__ = ["EXIT_FAILED", "EXIT_STOPPED", "EXIT_USAGE", "build_parser", "main", "sweep_command"]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STOPPED = 130  # 128 + SIGINT, as shells report a Ctrl-C
_TRAINING_MEMORY = "use less data (--max-train), a smaller --batch-size or --encoder, or close other programs"


class UserError(Exception):
    """A refusal the command states itself (its message is the one line shown)."""


class Stopped(Exception):
    """Ctrl-C: the message says what was kept."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage dump) and exits with 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"error: {one_line(message)} (see --help)\n")


def _fail(message: str) -> int:
    print(f"error: {one_line(message)}", file=sys.stderr)
    return EXIT_USAGE


# --------------------------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------------------------


def _add_config_flags(p: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """One flag per RunConfig field, with its help and allowed range; defaults come from RunConfig."""
    defaults = RunConfig()
    for name, spec in FIELDS.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        help_text = f"{spec.help} [{spec.describe_range()}; default {default}]"
        if spec.type is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            # Values are parsed by RunConfig itself so CLI and app report the same messages.
            p.add_argument(flag, default=None, metavar=name.upper(), help=help_text)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The config flags the user gave, as text (RunConfig parses them, with the app's messages)."""
    return {k: getattr(args, k) for k in FIELDS if getattr(args, k, None) is not None}


def _add_out(p: argparse.ArgumentParser) -> None:
    from .store import DEFAULT_ROOT

    p.add_argument("--out", default=str(DEFAULT_ROOT), help="folder holding the runs [default models]")


def _writable_folder(path: str | Path, flag: str = "--out") -> Path:
    """``path`` as a folder this process can write in (created if missing), or :class:`UserError`."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag} {p} is a file, not a folder: give a folder for the runs (it is created if missing)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{flag} {p}: a part of this path is a file, not a folder; give a folder for the runs") \
            from None
    except OSError as e:
        raise UserError(describe_os_error(e, Where(path=str(p), flag=flag))) from None
    try:
        with tempfile.TemporaryFile(dir=p):  # a probe: unnamed where the system allows, removed at once
            pass
    except OSError as e:  # name the folder, not the probe
        raise UserError(describe_os_error(OSError(e.errno, e.strerror, str(p)), Where(path=str(p), flag=flag))) \
            from None
    return p


def _run_error(e: BaseException, config: RunConfig, out: str, run_dir: str | None) -> UserError | None:
    """What went wrong while a run read its data or wrote its folder (``run_dir`` once it exists).

    A ValueError is the data or the device refusing the config (a one-class data set, CUDA
    asked for where there is none). A MemoryError while the data is read (no run folder yet) is
    a file that declares more than it holds, or more data than fits. An OSError of a read or
    write on an open file names no file: the data folder or the run folder is named instead.
    Anything else: None (:func:`main` decides).
    """
    if isinstance(e, ValueError) and user_message(e) is None:
        return UserError(str(e))
    if isinstance(e, MemoryError) and run_dir is None:
        where = f" in {config.data_root}" if config.data_root else ""
        return UserError(f"out of memory while reading the data{where}: a file there may be damaged or declare a "
                         "size it does not hold; check the files, or use less data (--max-train)")
    if isinstance(e, OSError) and e.errno is not None and not e.filename:
        if run_dir is not None:
            where = Where(path=run_dir, doing="writing the run")
        elif config.data_root:
            where = Where(path=config.data_root, flag="--data-root", doing="reading the data")
        else:
            where = Where(path=out, flag="--out", doing="preparing the run")
        return UserError(describe_os_error(e, where))
    return None


def _where(args: argparse.Namespace) -> Where:
    """What the command works on, for messages about errors that name no file."""
    command = args.command
    if command in ("train", "sweep"):
        return Where(path=args.out, flag="--out", doing="training" if command == "train" else "running the sweep",
                     data_root=getattr(args, "data_root", None), memory_advice=_TRAINING_MEMORY)
    if command == "import":
        return Where(path=args.bundle, doing=f"importing {args.bundle}")
    if command == "export":
        return Where(path=args.to, flag="--to", doing=f"exporting to {args.to}")
    if command == "views":
        return Where(path=args.data_root, flag="--data-root", doing="measuring the views",
                     data_root=args.data_root, memory_advice=_TRAINING_MEMORY)
    return Where(path=args.out, flag="--out", doing=f"reading {args.out}")


# --------------------------------------------------------------------------------------------
# train, list, show, export, import
# --------------------------------------------------------------------------------------------


def _add_download(p: argparse.ArgumentParser) -> None:
    p.add_argument("--download", action="store_true",
                   help="fetch the data set's published files into --data-root first (mnist, fashion_mnist, cifar10, "
                   "cifar100, stl10; checksums verified; HCL_DATA_MIRROR=URL replaces the host)")


def _download_data(config: RunConfig, *, quiet: bool) -> None:
    """--download: fetch the data set's files (a DownloadError is one line, exit 2)."""
    from .data.download import download, downloadable
    from .data.progress import tqdm_progress

    if not downloadable(config.dataset):
        raise UserError(f"--download: {config.dataset} is not downloaded (it needs no files or they are your own); "
                        "leave out --download")
    download(config.dataset, config.data_root, progress=None if quiet else tqdm_progress())


def cmd_train(args: argparse.Namespace) -> int:
    config = RunConfig(**_given(args))
    _writable_folder(args.out)
    if args.download:
        _download_data(config, quiet=args.quiet)
    from .progress import TrainProgress
    from .threads import set_process_threads
    from .tracking import train_logger
    from .train import StopSignal, stop_on_sigterm, train

    progress = None if args.quiet else TrainProgress()
    tensorboard = train_logger(args.tensorboard, config)
    seen: dict[str, Any] = {}

    def callback(event: dict[str, Any]) -> None:
        if event["type"] == "start":
            seen["run_dir"] = event["run_dir"]
        for listener in (progress, tensorboard):
            if listener is not None:
                listener(event)

    set_process_threads(config.threads)
    from .data.progress import reporting_to, tqdm_progress

    try:
        # SIGTERM (kill, a scheduler's stop) ends the run as Ctrl-C does: recorded "stopped";
        # the progress of a large data set's first read is shown too.
        with stop_on_sigterm(), reporting_to(None if args.quiet else tqdm_progress()):
            result = train(config, callback=callback, root=args.out)
    except KeyboardInterrupt as e:
        where = f"; the run's files so far are in {seen['run_dir']}" if seen.get("run_dir") else ""
        raise Stopped(f"{'SIGTERM' if isinstance(e, StopSignal) else 'Ctrl-C'}{where}") from None
    except (ValueError, MemoryError, OSError) as e:
        error = _run_error(e, config, args.out, seen.get("run_dir"))
        if error is None:
            raise
        raise error from None
    finally:
        if progress is not None:
            progress.close()
    out = {"run_dir": str(result.run_dir), "state": result.state, "message": result.message, **result.summary,
           "baseline": result.baseline}
    if args.linear_protocol and result.state == "finished":
        from .protocol.linear import linear_protocol
        from .store import load_run

        out["linear_protocol_acc"] = linear_protocol(load_run(result.run_dir)).accuracy
    print(json.dumps(out, default=float))
    if result.state == "stopped":  # the run noticed the stop itself and recorded it
        raise Stopped(f"{result.message or 'Ctrl-C'}; the run's files are in {result.run_dir}")
    return 0 if result.state == "finished" else EXIT_FAILED


def cmd_list(args: argparse.Namespace) -> int:
    from .store import list_runs

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a file, not a folder: give the folder holding the runs")
    runs, warnings = list_runs(args.out)
    for w in warnings:
        print(f"warning: {one_line(w)}", file=sys.stderr)
    if args.json:
        print(json.dumps([{"run_id": r.run_id, "path": str(r.path), "state": r.state,
                           "config": r.config.to_dict(), "summary": r.summary} for r in runs]))
        return 0
    if not runs:
        print(f"no runs under {args.out}")
        return 0
    shown = ("few_shot_probe_acc", "knn_acc")
    widths = {k: max(6, len(METRICS[k].short)) for k in shown}
    print(f"{'run':<52} {'state':<11} {'epochs':>6} " + " ".join(f"{METRICS[k].short:>{widths[k]}}" for k in shown))
    for r in runs:
        s = r.summary
        cells = [f"{s[k]:.3f}" if isinstance(s.get(k), int | float) else "-" for k in shown]
        print(f"{r.run_id:<52} {r.state:<11} {s.get('epochs', '-'):>6} "
              + " ".join(f"{c:>{widths[k]}}" for c, k in zip(cells, shown, strict=True)))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .store import find_run

    run = find_run(args.run, args.out)
    print(json.dumps({"run_id": run.run_id, "path": str(run.path), "state": run.state,
                      "message": run.status.get("message", ""), "config": run.config.to_dict(),
                      "summary": run.summary, "snapshots": run.snapshot_epochs()}, indent=2))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .bundle import import_bundle

    print(import_bundle(args.bundle, args.out))
    return 0


# --------------------------------------------------------------------------------------------
# sweep
# --------------------------------------------------------------------------------------------


def sweep_command(manifest: dict[str, Any]) -> str:
    """The ``python -m hcl_core sweep ...`` line that reproduces a sweep's grid and base config."""
    base = manifest.get("base_config") or {}
    default = RunConfig().to_dict()
    parts = ["python", "-m", "hcl_core", "sweep",
             "--losses", ",".join(manifest.get("losses", [])),
             "--betas", ",".join(f"{b:g}" for b in manifest.get("betas", [])),
             "--seeds", ",".join(str(s) for s in manifest.get("seeds", []))]
    for k in FIELDS:  # in the order of --help, whatever order the manifest's JSON has
        if k in ("loss", "beta", "seed") or k not in base or base[k] == default[k]:
            continue
        v = base[k]
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            parts.append(flag if v else "--no-" + k.replace("_", "-"))
        else:
            parts += [flag, "none" if v is None else str(v)]
    return shlex.join(parts)


def _whole(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {low}, got {text!r}")
        return value

    return parse


def _add_sweep_parser(sub: Any) -> None:
    from .backends import BACKENDS
    from .sweep import DEFAULT_BETAS, DEFAULT_LOSSES, DEFAULT_SEEDS

    # allow_abbrev=False: "--loss hcl" must be an error, not a silent abbreviation of --losses.
    p = sub.add_parser("sweep", allow_abbrev=False,
                       help="train a grid of runs (losses x betas x seeds) and summarise it",
                       description="Train every loss x beta x seed (a loss without beta once per seed) and "
                       "write a summary table (mean and std over seeds) as CSV and Markdown.")
    p.add_argument("--losses", default=",".join(DEFAULT_LOSSES),
                   help=f"comma-separated losses, of {', '.join(LOSSES)} [default {','.join(DEFAULT_LOSSES)}]")
    p.add_argument("--betas", default=",".join(f"{b:g}" for b in DEFAULT_BETAS),
                   help=f"comma-separated hardness values, used by losses that read beta "
                   f"[{FIELDS['beta'].describe_range()}; default {','.join(f'{b:g}' for b in DEFAULT_BETAS)}]")
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)),
                   help=f"comma-separated seeds [default {','.join(map(str, DEFAULT_SEEDS))}]")
    _add_config_flags(p, skip=("loss", "beta", "seed"))
    _add_out(p)
    _add_download(p)
    p.add_argument("--sweep-name", default=None,
                   help="name of the sweep folder under --out [default sweep-<dataset>-<date>-<time>]")
    p.add_argument("--backend", choices=BACKENDS, default="local",
                   help="local: processes on this machine; ray: Ray tasks [default local]")
    p.add_argument("--workers", type=_whole(1), default=None,
                   help="parallel runs: local processes, or runs at once on a local Ray [default min(2, cores)]")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (e.g. ray://head:10001, 10.0.0.5:6379 or auto); without it a "
                   "local Ray is started for the sweep")
    p.add_argument("--cpus-per-run", default=None, metavar="CPUS",
                   help="CPUs each Ray task asks for; fractions allowed [default the run's threads, 1]")
    p.add_argument("--gpus-per-run", default=None, metavar="GPUS",
                   help="GPUs each Ray task asks for: Ray places the run on a node that has them; 0.5 lets "
                   "two runs share a GPU [default 1 with --device cuda, else 0]")
    p.add_argument("--retries", type=_whole(0), default=2,
                   help="times Ray re-runs a run whose worker or node died [default 2]")
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    from . import tracking

    tracking.add_arguments(p)
    p.set_defaults(func=cmd_sweep)


_SAFE_NAME_CHARS = "letters, digits, '_', '-' and '.' (at most 100, not starting with '.')"


def _sweep_folder(out: Path, name: str | None, dataset: str) -> Path:
    import re

    from .sweep import SweepError

    if name is None:
        name = f"sweep-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        raise SweepError(f"--sweep-name {name!r}: use {_SAFE_NAME_CHARS}")
    folder = out / name
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise SweepError(f"{folder} already exists and is not empty: choose another --sweep-name")
    return folder


def _check_data(config: RunConfig, out: str) -> None:
    """Fail fast (once, not once per run) when the data set's files are missing or unreadable."""
    from .train import load_config_data

    try:
        load_config_data(config)
    except (ValueError, MemoryError, OSError) as e:
        error = _run_error(e, config, out, None)
        if error is None:
            raise
        raise error from None


def cmd_sweep(args: argparse.Namespace) -> int:
    """``python -m hcl_core sweep``. Exit 0 all finished, 1 some failed, 2 bad input, 130 Ctrl-C."""
    from .backends import plan_resources
    from .sweep import SweepError, check_losses, expand_grid, grid_base, parse_list, run_sweep

    losses = parse_list(args.losses, "--losses", str)
    check_losses(losses)
    betas = parse_list(args.betas, "--betas", float)
    seeds = parse_list(args.seeds, "--seeds", int)
    configs = expand_grid(_given(args), losses, betas, seeds)
    base = configs[0]
    if args.address and args.backend != "ray":
        raise SweepError("--address is only used with --backend ray")
    workers = args.workers or min(2, os.cpu_count() or 1)
    plan = plan_resources(args.backend, workers=workers, threads=base.threads, cpus_per_run=args.cpus_per_run,
                          gpus_per_run=args.gpus_per_run, devices={base.device})
    folder = _sweep_folder(Path(args.out), args.sweep_name, base.dataset)
    _writable_folder(args.out)
    if args.download:
        _download_data(base, quiet=args.quiet)
    if args.backend == "local":  # on Ray the data is read by the nodes, from their own data_root
        _check_data(base, args.out)
    manifest = {"name": folder.name, "created": time.time(), "losses": list(losses), "betas": list(betas),
                "seeds": list(seeds), "base_config": grid_base(configs), "argv": sys.argv[1:]}
    manifest["command"] = sweep_command(manifest)
    from .progress import SweepProgress
    from .tracking import sweep_logger

    progress = None if args.quiet else SweepProgress(len(configs))
    how = f"{workers} worker(s) x {plan.threads} thread(s)" if args.backend == "local" else plan.describe()
    if args.backend == "ray" and not sys.stderr.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # Ray's notes about retries, without colour codes
    try:
        result = run_sweep(configs, folder, backend=args.backend, workers=workers, address=args.address,
                           cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run, retries=args.retries,
                           manifest=manifest, on_result=sweep_logger(args.tensorboard, folder.name, then=progress),
                           on_ready=None if progress is None else lambda: progress.start(folder, args.backend, how))
    finally:
        if progress is not None:
            progress.close()
    print(result.paths["md"].read_text(encoding="utf-8"), end="")
    print(json.dumps({"summary": str(result.paths["csv"]), "summary_md": str(result.paths["md"]),
                      "sweep_dir": str(folder), "runs": len(result.results),
                      "finished": len(result.results) - len(result.failed), "failed": len(result.failed),
                      "seconds": round(result.seconds, 2)}))
    if result.interrupted:
        raise Stopped(f"Ctrl-C; {len(result.results)} of {len(configs)} runs came back, their summary is in "
                      f"{result.paths['csv']}")
    return EXIT_FAILED if result.failed else 0


# --------------------------------------------------------------------------------------------
# the parser and the one place errors become exit codes
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from . import tracking
    from .export import command as export_command

    parser = _Parser(prog="python -m hcl_core", description="Hardness Explorer: train and compare "
                     "contrastive losses with hard negatives, headless.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train one run and print its results as JSON")
    _add_config_flags(p)
    _add_out(p)
    _add_download(p)
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    p.add_argument("--linear-protocol", action="store_true",
                   help="also run the published linear evaluation at the end (a linear layer on the frozen features, "
                   "Adam, 100 epochs on augmented training images; docs/PROTOCOL.md)")
    tracking.add_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("list", help="list the runs in a folder")
    _add_out(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="print one run's config and results")
    p.add_argument("run", help="run id (or a unique prefix) or the run folder")
    _add_out(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("export", help="write one run's files: a zip bundle, the encoder (safetensors) or its "
                       "embeddings (TensorBoard projector TSV, npz)")
    export_command.add_arguments(p)
    p.set_defaults(func=export_command.run)

    p = sub.add_parser("import", help="add a run from a zip bundle (checked; never overwrites a run)")
    p.add_argument("bundle", metavar="FILE.zip", help="a bundle written by export")
    _add_out(p)
    p.set_defaults(func=cmd_import)

    _add_sweep_parser(sub)

    from .protocol import views_command

    p = sub.add_parser("views", help="how often augmented views keep their class, per augmentation strength "
                       "(docs/PROTOCOL.md)")
    views_command.add_arguments(p)
    p.set_defaults(func=views_command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns its exit code (see the module docstring)."""
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        print("stopped: Ctrl-C", file=sys.stderr)
        return EXIT_STOPPED
    if hasattr(args, "out"):
        args.out = str(Path(args.out))
    try:
        return args.func(args)
    except Stopped as e:
        print(f"stopped: {one_line(e)}", file=sys.stderr)
        return EXIT_STOPPED
    except KeyboardInterrupt:
        print("stopped: Ctrl-C", file=sys.stderr)
        return EXIT_STOPPED
    except UserError as e:
        return _fail(str(e))
    except Exception as e:
        message = user_message(e, _where(args))
        if message is None:
            raise  # a bug: its traceback is what a report needs
        return _fail(message)
