"""``python -m hcl_core export RUN --to DEST [--format F] [--epoch E]``: one run's results as files.

Formats (``--format``, ``bundle`` by default):

* ``bundle``: every file of the run in a zip that ``import`` reads back (``--to run.zip``);
* ``safetensors``: the encoder's weights with its architecture and config (``--to enc.safetensors``,
  plus ``enc.json`` beside it), read back by ``hcl_core.load_encoder``;
* ``projector``: ``tensors.tsv`` + ``metadata.tsv`` for the TensorBoard Embedding Projector
  (``--to DIR``; ``--epoch E`` picks the snapshot, the last by default);
* ``npz``: the same embeddings as one numpy file (``--to emb.npz``; ``--epoch E``).

Prints the written path on stdout; bad input is one line on stderr and exit code 2. Importing
this module does not load torch (``--help`` stays fast).
"""

from __future__ import annotations

import argparse

from ._common import ExportError

__all__ = ["FORMATS", "add_arguments", "run"]

#: format -> what ``--to`` names, for the help text.
FORMATS = {
    "bundle": "a .zip file holding every file of the run (read back by `import`)",
    "safetensors": "a .safetensors file of the encoder's weights, its architecture and config in its "
                   "metadata and in a .json beside it (read back by hcl_core.load_encoder)",
    "projector": "a folder for tensors.tsv and metadata.tsv, which the TensorBoard Embedding Projector loads",
    "npz": "a .npz file of a snapshot's features, labels and class names",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``RUN``, ``--to``, ``--format``, ``--epoch`` and ``--out`` to the ``export`` sub-parser."""
    from ..store import DEFAULT_ROOT

    parser.add_argument("run", help="run id (or a unique prefix) or the run folder")
    parser.add_argument("--to", required=True, metavar="DEST",
                        help="where to write: " + "; ".join(f"{k}: {v}" for k, v in FORMATS.items())
                        + ". Nothing existing is overwritten")
    parser.add_argument("--format", choices=tuple(FORMATS), default="bundle",
                        help="what to write [default bundle]")
    parser.add_argument("--epoch", type=int, default=None, metavar="E",
                        help="the snapshot for projector and npz [default the last]")
    parser.add_argument("--out", default=str(DEFAULT_ROOT), help="folder holding the runs [default models]")


def run(args: argparse.Namespace) -> int:
    """Do the export ``args`` ask for and print where it went.

    Errors propagate: the command line turns them into one line and exit code 2
    (:func:`hcl_core.errors.user_message`).
    """
    from ..store import find_run

    if args.epoch is not None and args.format not in ("projector", "npz"):
        raise ExportError(f"--epoch picks a snapshot for --format projector or npz, not for {args.format}")
    found = find_run(args.run, args.out)
    if args.format == "bundle":
        from ..bundle import export_run

        dest = export_run(found.path, args.to)
    elif args.format == "safetensors":
        from .encoder import export_safetensors

        dest = export_safetensors(found, args.to)
    elif args.format == "projector":
        from .arrays import export_projector

        dest = export_projector(found, args.to, epoch=args.epoch)
    else:
        from .arrays import export_npz

        dest = export_npz(found, args.to, epoch=args.epoch)
    print(dest)
    return 0
