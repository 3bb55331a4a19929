"""``python -m hcl_core views``: its flags and its run, importable without torch (the parser is built at start)."""

from __future__ import annotations

import argparse
import json
import sys

from ..registry import DATASETS

__all__ = ["DEFAULT_STRENGTHS", "THRESHOLD", "add_arguments", "run"]

#: The strengths measured by default (the config allows 0..2; 1 is the usual "strong").
DEFAULT_STRENGTHS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5)
#: Views must keep their class at least this often for a strength to be proposed.
THRESHOLD = 0.95


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the view-fidelity command."""
    parser.add_argument("--dataset", default="digits", choices=tuple(DATASETS), help="data set [default digits]")
    parser.add_argument("--data-root", default=None, help="folder of a data set read from files")
    parser.add_argument("--strengths", default=",".join(f"{s:g}" for s in DEFAULT_STRENGTHS),
                        help="comma-separated augmentation strengths in [0, 2] [default %(default)s]")
    parser.add_argument("--draws", type=int, default=5, help="random views per test image and strength [default 5]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the classifier and the views [default 0]")
    parser.add_argument("--steps", type=int, default=1500, help="training steps of the clean classifier [default 1500]")
    parser.add_argument("--threshold", type=float, default=THRESHOLD,
                        help="fraction of the clean accuracy the views must keep [default 0.95]")
    parser.add_argument("--synthetic-overlap", type=float, default=0.3, help="class overlap of synthetic [0.3]")
    parser.add_argument("--max-train", type=int, default=None, help="use at most this many training samples")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")


def run(args: argparse.Namespace) -> int:
    """Measure, print a table on stderr and one JSON line on stdout (errors go to the command line's one error path)."""
    from ..errors import UsageError
    from .views import view_fidelity

    try:
        strengths = [float(s) for s in str(args.strengths).split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--strengths: {args.strengths!r} is not a comma-separated list of numbers") from None
    try:
        result = view_fidelity(args.dataset, strengths=strengths, data_root=args.data_root, draws=args.draws,
                               seed=args.seed, steps=args.steps, threshold=args.threshold,
                               synthetic_overlap=args.synthetic_overlap, max_train=args.max_train)
    except ValueError as e:
        if type(e) is not ValueError:  # the data package's own errors are already user errors
            raise
        raise UsageError(str(e)) from None
    if not args.json:
        print(f"{result.dataset}: a {result.classifier} classifier trained on clean images gets "
              f"{result.clean_accuracy:.1%} of the clean test images ({result.test_size}) right; on augmented views "
              f"({result.draws} draws):", file=sys.stderr)
        for s, a, sd, kept in zip(result.strengths, result.accuracy, result.std, result.retained, strict=True):
            mark = "  <- proposed" if s == result.proposed else ""
            print(f"  strength {s:4.2f}: {a:6.1%} ± {sd:.1%}  ({kept:.1%} of clean){mark}", file=sys.stderr)
        print(f"proposed strength (views keep >= {result.threshold:.0%} of the clean accuracy): {result.proposed:g}",
              file=sys.stderr)
    print(json.dumps(result.to_dict()))
    return 0
