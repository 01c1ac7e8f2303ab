"""``secagg-rec bench masking``: mask expansion + accumulation vs AES-128-CTR."""

from __future__ import annotations

import argparse
from typing import Any

from secagg_rec.commands._output import print_json


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "masking", help="mask expansion + accumulation against AES-128-CTR, same run"
    )
    p.add_argument("--dim", type=int, default=1_000_000, help="words per mask")
    p.add_argument("--bits", type=int, default=32, help="ring width (<= 32: 4-byte words)")
    p.add_argument("--seeds", type=int, default=32, help="masks per measurement")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from secagg_rec.sim.masking_bench import bench_masking

    for name in ("dim", "seeds", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1")
    out = bench_masking(dim=args.dim, bits=args.bits, seeds=args.seeds, repeats=args.repeats)
    if args.json:
        print_json(out)
        return 0
    print(f"mask expansion + accumulation: {out['mask_gbps']:.2f} GB/s")
    print(f"AES-128-CTR (same run):        {out['aes_ctr_gbps']:.2f} GB/s")
    print(f"ratio:                         {out['ratio']:.2f}")
    if out["openssl_aes_ctr_gbps"] is not None:
        print(f"openssl speed aes-128-ctr:     {out['openssl_aes_ctr_gbps']:.2f} GB/s")
    return 0
