"""Benchmark: mask expansion + accumulation against raw AES-128-CTR, in one run.

Both sides use the same primitive (``cryptography``'s AES-CTR with ``update_into`` on
preallocated buffers) and the same chunk size, so the ratio isolates what the masking
adds on top of the cipher (word arithmetic, memory traffic, Python overhead). The two
are measured interleaved, ``repeats`` times each, and the medians reported, so a
machine busy with something else slows both alike. When the ``openssl`` command is
present, ``openssl speed -evp aes-128-ctr`` is also recorded for reference.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
import time
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg_rec.crypto.prg import MaskExpander

__all__ = ["bench_masking", "openssl_aes_ctr_gbps"]


def _aes_ctr_gbps(total_bytes: int, chunk: int) -> float:
    zeros = memoryview(bytes(chunk))
    out = bytearray(chunk + 16)
    enc = Cipher(algorithms.AES(os.urandom(16)), modes.CTR(b"\x00" * 16)).encryptor()
    t0 = time.perf_counter()
    done = 0
    while done < total_bytes:
        enc.update_into(zeros, out)
        done += chunk
    return done / (time.perf_counter() - t0) / 1e9


def _mask_gbps(dim: int, bits: int, seeds: int) -> float:
    ex = MaskExpander(dim, bits)
    acc = ex.new_accumulator()
    items = [(os.urandom(16), 1 if i % 2 else -1) for i in range(seeds)]
    t0 = time.perf_counter()
    ex.accumulate_many(acc, items)
    dt = time.perf_counter() - t0
    return seeds * dim * ex.dtype.itemsize / dt / 1e9


def openssl_aes_ctr_gbps(seconds: int = 1) -> float | None:
    """Single-core ``openssl speed -evp aes-128-ctr`` at 16 KiB blocks, GB/s, or None."""
    exe = shutil.which("openssl")
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, "speed", "-seconds", str(seconds), "-bytes", "16384", "-evp", "aes-128-ctr"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"^aes-128-ctr\s+([\d.]+)k", proc.stdout, re.MULTILINE | re.IGNORECASE)
    return float(m.group(1)) * 1000 / 1e9 if m else None


def bench_masking(
    *, dim: int = 1_000_000, bits: int = 32, seeds: int = 32, repeats: int = 5
) -> dict[str, Any]:
    """Measure masking and AES-CTR throughput; return medians and their ratio.

    Args:
        dim: words per mask; bits: ring width (32 -> 4-byte words);
        seeds: masks accumulated per measurement (like one client's neighbours);
        repeats: interleaved measurements of each.

    Returns:
        ``mask_gbps`` (mask bytes produced and accumulated per second, 1e9 bytes),
        ``aes_ctr_gbps`` (same-run keystream rate), ``ratio``, ``openssl_aes_ctr_gbps``
        (or None), and the settings and machine.
    """
    word = 4 if bits <= 32 else 8
    total = dim * word * seeds
    masks, aes = [], []
    _mask_gbps(min(dim, 1 << 16), bits, 2)  # warm up
    for _ in range(repeats):
        masks.append(_mask_gbps(dim, bits, seeds))
        aes.append(_aes_ctr_gbps(total, 1 << 18))
    mask_med, aes_med = statistics.median(masks), statistics.median(aes)
    return {
        "mask_gbps": mask_med,
        "aes_ctr_gbps": aes_med,
        "ratio": mask_med / aes_med,
        "openssl_aes_ctr_gbps": openssl_aes_ctr_gbps(),
        "mask_gbps_runs": masks,
        "aes_ctr_gbps_runs": aes,
        "dim": dim,
        "bits": bits,
        "seeds": seeds,
        "repeats": repeats,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
    }
