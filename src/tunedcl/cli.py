"""The ``tunedcl`` command line: it parses arguments and calls the library, nothing more."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tunedcl import __version__


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunedcl",
        description="Tuned Contrastive Learning (TCL): losses, training and evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"tunedcl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser("demo", help="print what the TCL loss does, in two tables (seconds)")
    demo.add_argument("--n", type=int, default=4096, help="embeddings in the timed batch (default 4096)")
    demo.add_argument("--dim", type=int, default=128, help="embedding dimension (default 128)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tunedcl`` and ``python -m tunedcl``; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    command = args.command or "demo"
    if command == "demo":
        from tunedcl import demo

        n = getattr(args, "n", 4096)
        if n < 2:
            parser.error(f"--n must be >= 2; got {n}")
        demo.run(n=n, dim=getattr(args, "dim", 128), seed=getattr(args, "seed", 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
