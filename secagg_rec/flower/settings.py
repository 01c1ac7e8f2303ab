"""What the server asks for and what a client accepts, as plain values.

:class:`SecAggSettings` is the server's side: ring width, quantization, neighbour graph,
threshold and how long each stage waits. :class:`ClientPolicy` is the client's side:
the weakest round it agrees to join. Neither imports Flower; the round setup that
travels between them is in :mod:`secagg_rec.flower.setup`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from secagg_rec.encoding import Quantizer
from secagg_rec.secagg.driver import STAGES
from secagg_rec.secagg.params import choose_parameters

__all__ = ["DEFAULT_TIMEOUTS", "ClientPolicy", "SecAggSettings"]

#: Seconds each stage waits for replies. ``advertise`` includes local training.
DEFAULT_TIMEOUTS: Mapping[str, float] = MappingProxyType(
    {"advertise": 600.0, "share": 60.0, "masked": 60.0, "consistency": 60.0, "unmask": 60.0}
)


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class SecAggSettings:
    """How the server runs each secure-aggregation round over Flower.

    Args:
        bits: ring Z_{2^bits} of the sum, ``2 <= bits <= 62``.
        clip: per-coordinate clip of each update (after ``l2_clip``), ``> 0``.
        l2_clip: optional L2 clip of each update before the per-coordinate clip.
        weighted: encode ``[w*x, w]`` so the weight (e.g. example count) is masked and
            only the sums are revealed; the result is ``sum(w x) / sum(w)``. Without it
            the result is the plain mean over survivors.
        weight_max: largest weight a client may send (``> 0``, weighted only).
        scale: units per 1.0 of value. ``None`` (default): the finest scale for which
            the sum of ``n`` inputs cannot wrap (:meth:`Quantizer.fit`).
        weight_scale: units per 1.0 of weight (``None``: as ``scale``; ``1`` encodes
            integer counts exactly). Only with an explicit ``scale``.
        neighbors: ``"full"`` (every pair masks: classic SecAgg), an int ``k`` (SecAgg+
            graph), or ``"auto"`` (``k`` and ``t`` from
            :func:`secagg_rec.secagg.params.choose_parameters` with ``dropout`` and
            ``corrupt``).
        threshold: shares needed to rebuild a secret. ``None``: a majority of each
            client's holders, ``floor((k + 1) / 2) + 1`` (or the ``"auto"`` value).
        dropout: fraction of clients expected to drop, for ``"auto"``, ``[0, 1)``.
        corrupt: fraction of clients that may collude with the server, for ``"auto"``.
        min_clients: a round needs at least this many connected nodes (``>= 2``).
        seed_bytes: mask seed width, 16 (AES-128) or 32 (AES-256).
        timeouts: seconds each stage waits for replies, by stage name (``advertise``,
            ``share``, ``masked``, ``consistency``, ``unmask``); missing stages use
            :data:`DEFAULT_TIMEOUTS`. A node that has not answered when its stage's
            time is up has dropped out of the round.
        poll_interval: seconds between two pulls of replies, ``> 0``.

    Raises:
        ValueError: any field out of range (checked on construction).
    """

    bits: int = 40
    clip: float = 1.0
    l2_clip: float | None = None
    weighted: bool = True
    weight_max: float = 1_000_000.0
    scale: float | None = None
    weight_scale: float | None = None
    neighbors: int | Literal["full", "auto"] = "full"
    threshold: int | None = None
    dropout: float = 0.1
    corrupt: float = 0.05
    min_clients: int = 3
    seed_bytes: int = 16
    timeouts: Mapping[str, float] = field(default_factory=dict)
    poll_interval: float = 0.2

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not 2 <= self.bits <= 62:
            raise ValueError(f"bits must be an int in [2, 62], got {self.bits!r}")
        _positive("clip", self.clip)
        _positive("weight_max", self.weight_max)
        _positive("poll_interval", self.poll_interval)
        if self.l2_clip is not None:
            _positive("l2_clip", self.l2_clip)
        if self.scale is not None:
            _positive("scale", self.scale)
        if self.weight_scale is not None:
            if self.scale is None:
                raise ValueError("weight_scale needs an explicit scale")
            _positive("weight_scale", self.weight_scale)
        if self.neighbors not in ("full", "auto") and (
            not isinstance(self.neighbors, int)
            or isinstance(self.neighbors, bool)
            or self.neighbors < 1
        ):
            raise ValueError(
                f"neighbors must be 'full', 'auto' or an int >= 1, got {self.neighbors!r}"
            )
        if self.threshold is not None and (
            not isinstance(self.threshold, int)
            or isinstance(self.threshold, bool)
            or self.threshold < 1
        ):
            raise ValueError(f"threshold must be None or an int >= 1, got {self.threshold!r}")
        if self.neighbors == "auto" and self.threshold is not None:
            raise ValueError("neighbors='auto' chooses the threshold; leave threshold=None")
        if not isinstance(self.min_clients, int) or self.min_clients < 2:
            raise ValueError(f"min_clients must be an int >= 2, got {self.min_clients!r}")
        if self.seed_bytes not in (16, 32):
            raise ValueError("seed_bytes must be 16 or 32")
        unknown = set(self.timeouts) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage(s) in timeouts: {sorted(unknown)}; stages: {STAGES}")
        for stage, seconds in self.timeouts.items():
            _positive(f"timeouts[{stage!r}]", seconds)
        object.__setattr__(
            self, "timeouts", MappingProxyType({**DEFAULT_TIMEOUTS, **dict(self.timeouts)})
        )

    def graph_for(self, n: int) -> tuple[int | Literal["full"], int]:
        """``(neighbors, threshold)`` for a round of ``n`` clients.

        Raises:
            ValueError: ``n < 2``, or an explicit ``k``/``threshold`` that does not fit
                ``n`` clients (``k <= n - 1``, ``t <= k + 1``).
        """
        if n < 2:
            raise ValueError(f"a round needs at least 2 clients, got {n}")
        if self.neighbors == "auto":
            params = choose_parameters(n, dropout=self.dropout, corrupt=self.corrupt)
            neighbors: int | Literal["full"] = "full" if params.k >= n - 1 else params.k
            return neighbors, params.t
        if self.neighbors == "full":
            k = n - 1
            neighbors = "full"
        else:
            k = int(self.neighbors)
            if k > n - 1:
                raise ValueError(f"neighbors={k} needs at least {k + 1} clients, got {n}")
            neighbors = k
        threshold = (k + 1) // 2 + 1 if self.threshold is None else self.threshold
        threshold = min(threshold, k + 1)
        if self.threshold is not None and self.threshold > k + 1:
            raise ValueError(f"threshold={self.threshold} exceeds the {k + 1} holders per client")
        return neighbors, threshold

    def quantizer_for(self, n: int) -> Quantizer:
        """The quantizer for a round of ``n`` clients (its sum cannot wrap).

        Raises:
            ValueError: ``bits`` too small for ``n`` clients at this clip/scale (the
                message names the ``bits`` that would do).
        """
        if self.scale is None:
            return Quantizer.fit(
                bits=self.bits,
                clip=self.clip,
                max_clients=n,
                l2_clip=self.l2_clip,
                weighted=self.weighted,
                weight_max=self.weight_max,
            )
        return Quantizer(
            bits=self.bits,
            clip=self.clip,
            scale=self.scale,
            max_clients=n,
            l2_clip=self.l2_clip,
            weighted=self.weighted,
            weight_max=self.weight_max,
            weight_scale=self.weight_scale,
        )


@dataclass(frozen=True, kw_only=True)
class ClientPolicy:
    """The weakest round a client agrees to join; anything weaker is refused.

    The server chooses the round's parameters, so an honest client checks them before
    it trains or reveals anything. Refusal is an error reply: the server sees the
    client drop out.

    Args:
        min_clients: fewest clients in the round (``>= 2``). With two, each learns the
            other's input from the sum; the default is 3.
        min_threshold: smallest ``t`` accepted (``>= 1``).
        min_threshold_fraction: smallest ``t / (k + 1)`` accepted, ``[0, 1]``. A
            threshold of at least half the holders (``> 0.5``) is what defends
            against a server that lies about dropouts (see the threat model).
        max_dim: the longest vector (words) the client will mask, ``>= 1``.
        max_bits: the widest ring accepted, ``<= 62``.

    Raises:
        ValueError: a field out of range.
    """

    min_clients: int = 3
    min_threshold: int = 2
    min_threshold_fraction: float = 0.0
    max_dim: int = 1 << 28
    max_bits: int = 62

    def __post_init__(self) -> None:
        if not isinstance(self.min_clients, int) or self.min_clients < 2:
            raise ValueError(f"min_clients must be an int >= 2, got {self.min_clients!r}")
        if not isinstance(self.min_threshold, int) or self.min_threshold < 1:
            raise ValueError(f"min_threshold must be an int >= 1, got {self.min_threshold!r}")
        if not 0.0 <= float(self.min_threshold_fraction) <= 1.0:
            raise ValueError(
                f"min_threshold_fraction must be in [0, 1], got {self.min_threshold_fraction!r}"
            )
        if not isinstance(self.max_dim, int) or self.max_dim < 1:
            raise ValueError(f"max_dim must be an int >= 1, got {self.max_dim!r}")
        if not isinstance(self.max_bits, int) or not 2 <= self.max_bits <= 62:
            raise ValueError(f"max_bits must be an int in [2, 62], got {self.max_bits!r}")
