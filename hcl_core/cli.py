"""``python -m hcl_core train|sweep|list|show|export|import``: the same runs as the app, headless.

Every ``RunConfig`` field is a flag (``--tau-plus`` for ``tau_plus``). ``train`` prints a
progress bar on stderr and, as the last line of stdout, one JSON object with the results.
Bad input gives a one-line error on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .config import FIELDS, ConfigError, RunConfig
from .threads import set_process_threads

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage dump) and exits with 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"error: {message} (see --help)\n")


def _add_config_flags(p: argparse.ArgumentParser, *, sweepable: tuple[str, ...] = ()) -> None:
    """One flag per RunConfig field, with its help and allowed range; defaults come from RunConfig."""
    defaults = RunConfig()
    for name, spec in FIELDS.items():
        if name in sweepable:
            continue
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        help_text = f"{spec.help} [{spec.describe_range()}; default {default}]"
        if spec.type is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            # Values are parsed by RunConfig itself so CLI and app report the same messages.
            p.add_argument(flag, default=None, metavar=name.upper(), help=help_text)


def _config_from_args(args: argparse.Namespace, **overrides: Any) -> RunConfig:
    values = {k: getattr(args, k) for k in FIELDS if getattr(args, k, None) is not None}
    values.update(overrides)
    return RunConfig(**values)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


class ProgressBar:
    """A one-line progress bar on stderr (one line per epoch when stderr is not a terminal)."""

    def __init__(self, stream=sys.stderr, width: int = 28):
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.total = 0
        self.epochs = 0
        self._last = 0.0
        self._speed = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "start":
            self.total, self.epochs = event["total_steps"], event["epochs"]
            print(f"training on {event['device']}: {event['train_size']} samples, "
                  f"{self.total} steps -> {event['run_dir']}", file=self.stream)
        elif kind == "epoch":
            self._speed = event["steps_per_s"]
            if not self.tty:
                print(f"epoch {event['epoch']}/{self.epochs}  loss {event['loss']:.4f}  "
                      f"{self._speed:.0f} steps/s", file=self.stream)
        elif kind == "step" and self.tty and time.monotonic() - self._last > 0.1:
            self._last = time.monotonic()
            frac = event["step"] / max(self.total, 1)
            bar = "#" * int(frac * self.width)
            self.stream.write(f"\r[{bar:<{self.width}}] {frac:4.0%} epoch {event['epoch']}/{self.epochs} "
                              f"loss {event['loss']:.4f} {self._speed:.0f} steps/s ")
            self.stream.flush()
        elif kind == "eval" and event["epoch"] > 0:
            if self.tty:
                self.stream.write("\n")
            print(f"  eval epoch {event['epoch']}: few-shot {event['few_shot_probe_acc']:.3f}  "
                  f"kNN {event['knn_acc']:.3f}  linear {event['linear_probe_acc']:.3f}", file=self.stream)
        elif kind == "end" and self.tty:
            self.stream.write("\n")


def cmd_train(args: argparse.Namespace) -> int:
    from .data import DataNotFoundError
    from .train import train

    try:
        config = _config_from_args(args)
    except ConfigError as e:
        return _fail(str(e))
    try:
        set_process_threads(config.threads)
        result = train(config, callback=None if args.quiet else ProgressBar(), root=args.out)
    except (DataNotFoundError, ValueError) as e:
        return _fail(str(e))
    out = {"run_dir": str(result.run_dir), "state": result.state, "message": result.message,
           **result.summary}
    print(json.dumps(out, default=float))
    return 0 if result.state == "finished" else 1


def cmd_list(args: argparse.Namespace) -> int:
    from .store import list_runs

    runs, warnings = list_runs(args.out)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps([{"run_id": r.run_id, "path": str(r.path), "state": r.state,
                           "config": r.config.to_dict(), "summary": r.summary} for r in runs]))
        return 0
    if not runs:
        print(f"no runs under {args.out}")
        return 0
    print(f"{'run':<52} {'state':<11} {'epochs':>6} {'few-shot':>8} {'kNN':>6}")
    for r in runs:
        s = r.summary
        few = f"{s['few_shot_probe_acc']:.3f}" if "few_shot_probe_acc" in s else "-"
        knn = f"{s['knn_acc']:.3f}" if "knn_acc" in s else "-"
        print(f"{r.run_id:<52} {r.state:<11} {s.get('epochs', '-'):>6} {few:>8} {knn:>6}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .store import RunFileError, find_run

    try:
        run = find_run(args.run, args.out)
    except RunFileError as e:
        return _fail(str(e))
    print(json.dumps({"run_id": run.run_id, "path": str(run.path), "state": run.state,
                      "message": run.status.get("message", ""), "config": run.config.to_dict(),
                      "summary": run.summary, "snapshots": run.snapshot_epochs()}, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .bundle import export_run
    from .store import RunFileError, find_run

    try:
        dest = export_run(find_run(args.run, args.out).path, args.to)
    except (RunFileError, OSError) as e:
        return _fail(str(e))
    print(dest)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .bundle import import_bundle
    from .store import RunFileError

    try:
        path = import_bundle(args.bundle, args.out)
    except (RunFileError, OSError) as e:
        return _fail(str(e))
    print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .store import DEFAULT_ROOT

    parser = _Parser(prog="python -m hcl_core", description="Hardness Explorer: train and compare "
                     "contrastive losses with hard negatives, headless.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train one run and print its results as JSON")
    _add_config_flags(p)
    p.add_argument("--out", default=str(DEFAULT_ROOT), help="folder holding the runs [default models]")
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("list", help="list the runs in a folder")
    p.add_argument("--out", default=str(DEFAULT_ROOT), help="folder holding the runs [default models]")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="print one run's config and results")
    p.add_argument("run", help="run id (or a unique prefix) or the run folder")
    p.add_argument("--out", default=str(DEFAULT_ROOT), help="folder holding the runs [default models]")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("export", help="write one run's files to a zip bundle")
    p.add_argument("run", help="run id (or a unique prefix) or the run folder")
    p.add_argument("--to", required=True, metavar="FILE.zip", help="the bundle to write (not overwritten)")
    p.add_argument("--out", default=str(DEFAULT_ROOT), help="folder holding the runs [default models]")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="add a run from a zip bundle (checked; never overwrites a run)")
    p.add_argument("bundle", metavar="FILE.zip", help="a bundle written by export")
    p.add_argument("--out", default=str(DEFAULT_ROOT), help="folder holding the runs [default models]")
    p.set_defaults(func=cmd_import)

    from .sweep import add_sweep_parser

    add_sweep_parser(sub, _add_config_flags, _config_from_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "out"):
        args.out = str(Path(args.out))
    return args.func(args)
