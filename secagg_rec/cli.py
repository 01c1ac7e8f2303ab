"""The ``secagg-rec`` command line.

Each sub-command lives in its own module under :mod:`secagg_rec.commands` and exposes
``register(subparsers)``. Modules import their heavy dependencies (torch, opacus) lazily
inside the command function, so ``secagg-rec simulate`` never loads torch.

Exit status: 0 success, 1 a checked condition failed (e.g. an audit found a client over
budget, a simulated round aborted), 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from secagg_rec import __version__
from secagg_rec.errors import SecAggError

COMMAND_MODULES: tuple[str, ...] = (
    "secagg_rec.commands.simulate",
    "secagg_rec.commands.bench",
    "secagg_rec.commands.data",
    "secagg_rec.commands.train",
    "secagg_rec.commands.privacy",
    "secagg_rec.commands.audit",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="secagg-rec",
        description="Federated recommendation with local DP-SGD and secure aggregation.",
    )
    parser.add_argument("--version", action="version", version=f"secagg-rec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SecAggError, ValueError, FileNotFoundError) as exc:
        print(f"secagg-rec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"secagg-rec {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
