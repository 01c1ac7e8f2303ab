"""``secagg-rec data``: get and inspect datasets.

``secagg-rec data fetch ml-100k|ml-1m|ml-latest-small [--cache DIR] [--force] [--json]``
downloads a GroupLens archive, verifies its MD5 and unpacks it into the cache
(``$SECAGG_REC_DATA`` or ``~/.cache/secagg_rec``). Exit status 0 on success, 1 when the
download or the check fails (the message says where to put the files by hand), 2 for
bad usage.

``secagg-rec data info [--data PATH|NAME|synthetic] [--json]`` prints a dataset's
counts (users, items, interactions, users with tied latest timestamps).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from secagg_rec.commands._output import format_table, print_json


def register(subparsers: Any) -> None:
    """Add ``data`` and its sub-commands to the top-level parser."""
    from secagg_rec.rec.fetch import SOURCES

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "data", help="download or inspect recommendation datasets"
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    fetch = sub.add_parser(
        "fetch",
        help="download, verify (MD5) and unpack a MovieLens archive",
        description="Download a GroupLens MovieLens archive, verify its checksum and "
        "unpack it into the cache directory.",
    )
    fetch.add_argument("name", choices=sorted(SOURCES), help="dataset to fetch")
    fetch.add_argument(
        "--cache",
        metavar="DIR",
        default=None,
        help="cache directory (default: $SECAGG_REC_DATA or ~/.cache/secagg_rec)",
    )
    fetch.add_argument("--force", action="store_true", help="download even if cached")
    fetch.add_argument("--url", default=None, help="download from this mirror instead")
    fetch.add_argument("--md5", default=None, help="expected archive MD5 (with --url)")
    fetch.add_argument("--timeout", type=float, default=60.0, help="network timeout, seconds")
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar")
    fetch.add_argument("--json", action="store_true", help="print the result as JSON")
    fetch.set_defaults(func=run_fetch)

    info = sub.add_parser("info", help="print a dataset's counts")
    info.add_argument(
        "--data",
        default=None,
        help="dataset directory, ratings file, fetched dataset name, or 'synthetic' "
        "(default: synthetic)",
    )
    info.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    info.add_argument("--json", action="store_true", help="print the result as JSON")
    info.set_defaults(func=run_info)


def run_fetch(args: argparse.Namespace) -> int:
    """Run ``data fetch``; return the exit status."""
    from secagg_rec.rec.fetch import FetchError, fetch_dataset

    try:
        result = fetch_dataset(
            args.name,
            cache_dir=args.cache,
            url=args.url,
            md5=args.md5,
            force=args.force,
            progress=not args.no_progress,
            timeout=args.timeout,
        )
    except FetchError as exc:
        if args.json:
            print_json({"name": args.name, "ok": False, "error": str(exc)})
        print(f"secagg-rec data fetch: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print_json({"ok": True, **result.to_dict()})
    elif result.downloaded:
        print(f"{result.name}: downloaded {result.bytes} bytes from {result.url}")
        print(f"MD5 {result.md5} (verified), SHA-256 {result.sha256}")
        print(f"unpacked to {result.path}")
    else:
        print(f"{result.name}: already in {result.path} (use --force to download again)")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Run ``data info``; return the exit status."""
    from secagg_rec.rec.data import load_dataset

    summary = load_dataset(args.data, seed=args.seed).summary()
    if args.json:
        print_json(summary)
    else:
        rows = [{"field": k, "value": v} for k, v in summary.items()]
        print(format_table(rows, ["field", "value"]))
    return 0
