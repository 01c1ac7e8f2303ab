"""Turning the round's client updates into one mean update: in the clear or securely.

Both aggregators see the same inputs — the clients' (already clipped) updates, their
weights (1 each, or their example counts), and the dropout schedule of the round — and
return the weighted mean of the updates of the clients whose upload completed:

* :class:`PlainAggregator` adds float vectors (the reference, and ``--no-secagg``);
* :class:`SecureAggregator` quantizes each update with its weight *inside* the vector
  (``[w * delta, w]``, :class:`~secagg_rec.encoding.Quantizer`), runs one round of the
  secure-aggregation protocol in memory (:func:`~secagg_rec.secagg.run_round`), and
  decodes ``sum(w delta) / sum(w)``. The server side never sees an individual update
  or weight. The two agree up to the quantizer's stated error.

A client "uploads" iff it does not drop before sending its masked input; the
``on_upload`` callback sees, for each client, exactly the vector it hands to the
transport: its float update in the clear, or under secure aggregation the ring words
it masks (``[w * delta, w]`` quantized; what travels is those words plus masks that are
uniform on the ring). Tests use it to assert on what leaves a client.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from secagg_rec.encoding import Quantizer
from secagg_rec.secagg.config import SecAggConfig
from secagg_rec.secagg.driver import STAGES, run_round

__all__ = ["AggregateResult", "PlainAggregator", "SecureAggregator", "uploads_before"]

UploadHook = Callable[[int, np.ndarray], None]
_UPLOADED_BY = STAGES.index("consistency")  # dropping at this stage or later: input is in


def uploads_before(dropouts: Mapping[int, str], client: int) -> bool:
    """True iff ``client``'s masked input reaches the server under ``dropouts``."""
    stage = dropouts.get(client)
    return stage is None or STAGES.index(stage) >= _UPLOADED_BY


@dataclass
class AggregateResult:
    """The round's mean update and how it was obtained.

    Attributes:
        mean: float64 ``[dim]``, weighted mean of the included updates.
        included: clients whose updates are in the mean.
        total_weight: sum of their weights (decoded from the masked sum when secure).
        seconds: wall time of the aggregation (protocol included).
        stats: protocol measurements (secure only): bytes, client/server seconds.
    """

    mean: np.ndarray
    included: list[int]
    total_weight: float
    seconds: float
    stats: dict[str, Any] = field(default_factory=dict)


class PlainAggregator:
    """Weighted FedAvg in the clear: ``sum(w_i d_i) / sum(w_i)``."""

    secure = False

    def aggregate(
        self,
        updates: Mapping[int, np.ndarray],
        weights: Mapping[int, float],
        *,
        dropouts: Mapping[int, str],
        round_index: int,
        on_upload: UploadHook | None = None,
    ) -> AggregateResult:
        """Average the updates of clients that upload.

        Raises:
            ValueError: no client uploads, or the included weights sum to <= 0.
        """
        t0 = time.perf_counter()
        included = [c for c in sorted(updates) if uploads_before(dropouts, c)]
        if not included:
            raise ValueError("no client uploaded an update this round")
        total = np.zeros_like(updates[included[0]], dtype=np.float64)
        wsum = 0.0
        for c in included:
            if on_upload is not None:
                on_upload(c, updates[c])
            total += weights[c] * updates[c].astype(np.float64)
            wsum += weights[c]
        if wsum <= 0:
            raise ValueError("included clients have zero total weight")
        return AggregateResult(
            mean=total / wsum, included=included, total_weight=wsum,
            seconds=time.perf_counter() - t0,
        )


@lru_cache(maxsize=64)
def _protocol_parameters(n: int, dropout: float, corrupt: float, neighbors: str) -> tuple[Any, int]:
    """(neighbors for SecAggConfig, threshold) for ``n`` clients."""
    if n < 2:
        raise ValueError("secure aggregation needs at least 2 clients in a round")
    if neighbors == "full":
        return "full", max(2, n // 2 + 1) if n > 2 else 2
    from secagg_rec.secagg.params import choose_parameters

    params = choose_parameters(n, dropout=dropout, corrupt=corrupt)
    return ("full" if params.k >= n - 1 else params.k), params.t


class SecureAggregator:
    """FedAvg through the secure-aggregation protocol (one in-memory round).

    Args:
        clip: per-coordinate bound of an update (updates are clipped to it first).
        weight_max: public bound on a client's weight (its example count is capped).
        bits: ring width, default 32 (4-byte words); refused if the sum could wrap.
        neighbors: ``"auto"`` (SecAgg+, ``k`` and ``t`` from
            :func:`~secagg_rec.secagg.params.choose_parameters`) or ``"full"``.
        expected_dropout: dropout rate the parameters must tolerate.
        corrupt: tolerated corrupt fraction for ``"auto"``.
        seed: seeds the stochastic rounding (the masks use the OS CSPRNG).
    """

    secure = True

    def __init__(
        self,
        *,
        clip: float,
        weight_max: float,
        bits: int = 32,
        neighbors: str = "auto",
        expected_dropout: float = 0.1,
        corrupt: float = 0.05,
        seed: int = 0,
    ) -> None:
        if neighbors not in ("auto", "full"):
            raise ValueError("neighbors must be 'auto' or 'full'")
        self.clip, self.weight_max, self.bits = float(clip), float(weight_max), int(bits)
        self.neighbors, self.corrupt = neighbors, float(corrupt)
        self.expected_dropout = float(expected_dropout)
        self.seed = int(seed)

    def quantizer(self, n: int) -> Quantizer:
        """The round's quantizer for ``n`` clients (raises ValueError if b is too small)."""
        return Quantizer.fit(
            bits=self.bits, clip=self.clip, max_clients=n, weighted=True,
            weight_max=self.weight_max,
        )

    def aggregate(
        self,
        updates: Mapping[int, np.ndarray],
        weights: Mapping[int, float],
        *,
        dropouts: Mapping[int, str],
        round_index: int,
        on_upload: UploadHook | None = None,
    ) -> AggregateResult:
        """Run one secure round over the clients in ``updates``.

        Raises:
            secagg_rec.errors.ThresholdError: too many dropouts for the threshold (the
                round is lost; the caller decides whether to retry or skip it).
            ValueError: fewer than 2 clients, or a weight outside ``[0, weight_max]``.
        """
        t0 = time.perf_counter()
        ids: Sequence[int] = sorted(updates)
        n = len(ids)
        neighbors, threshold = _protocol_parameters(
            n, self.expected_dropout, self.corrupt, self.neighbors
        )
        quant = self.quantizer(n)
        dim = next(iter(updates.values())).shape[0]
        # Protocol client ids start at 1; client c of the federation is id c + 1.
        config = SecAggConfig(
            session_id=os.urandom(16),
            round_index=round_index,
            client_ids=tuple(c + 1 for c in ids),
            threshold=threshold,
            neighbors=neighbors,
            bits=self.bits,
            dim=quant.encoded_length(dim),
        )

        sent: dict[int, np.ndarray] = {}

        def encoded(pid: int) -> np.ndarray:
            c = pid - 1
            rng = np.random.default_rng([self.seed, round_index, c, 0x5EC])
            words = quant.encode(updates[c], rng, weight=min(weights[c], self.weight_max))
            if on_upload is not None:
                sent[c] = words.copy()
            return words

        result = run_round(
            config,
            encoded,
            dropouts={c + 1: stage for c, stage in dropouts.items() if c in updates},
        )
        if not result.ok:
            from secagg_rec.errors import ThresholdError

            raise ThresholdError(f"secure aggregation round {round_index} aborted: {result.error}")
        if on_upload is not None:
            for c, vec in sorted(sent.items()):
                on_upload(c, vec)
        assert result.aggregate is not None
        mean = quant.decode_mean(result.aggregate)
        secs = [result.client_seconds[c + 1] for c in ids]
        stats = {
            "clients": n,
            "neighbors": config.k,
            "threshold": threshold,
            "survivors": len(result.survivors),
            "client_seconds_total": float(sum(secs)),
            "client_seconds_max": float(max(secs)),
            "server_seconds": result.server_seconds,
            "bytes_up_per_client": float(np.mean([result.bytes_up[c + 1] for c in ids])),
            "bytes_down_per_client": float(np.mean([result.bytes_down[c + 1] for c in ids])),
            "quantization_bound": quant.sum_error_bound(len(result.survivors)),
        }
        return AggregateResult(
            mean=mean,
            included=[pid - 1 for pid in result.survivors],
            total_weight=quant.decode_total_weight(result.aggregate),
            seconds=time.perf_counter() - t0,
            stats=stats,
        )
