"""Run a round's clients in worker processes, with exactly the single-process result.

Client sessions are independent within a stage, so their work can run on every core.
The design keeps results independent of scheduling and memory at O(dim) per process:

* Clients are partitioned by position in ``config.client_ids`` (position ``i`` goes to
  worker ``i % workers``). Each worker builds its own :class:`ClientSession` objects
  once and keeps them for the whole round: no client state ever crosses a process
  boundary, only the protocol's bytes do.
* The parent runs the :class:`~secagg_rec.secagg.server.ServerSession` (through
  :func:`~secagg_rec.secagg.driver.drive_round`), encodes the server's messages lazily
  and sends them to the owning workers in bulk, a chunk at a time; each worker answers
  with one reply per client, in order, and the parent feeds the replies to the server
  in the server's own client order. The server therefore sees exactly the byte stream
  of :func:`~secagg_rec.secagg.driver.run_round`.
* At most two chunks are in flight per stage, and a chunk is sized so that its
  replies (a masked input is ``dim`` words) stay around ``chunk_bytes``: memory stays
  O(dim) per process however many clients there are.
* Inputs are produced in the worker that owns the client, by calling ``inputs(cid)``
  (a picklable callable, e.g. one that regenerates the input from ``(seed, cid)``), or
  from the worker's slice of a mapping.

Workers are started with the ``forkserver`` method where the platform has it (a clean,
single-threaded server process that has imported this module once forks each worker,
so starting one is cheap and no process holding threads or locks is ever forked),
otherwise with ``spawn``. The aggregate equals the single-process aggregate bit for
bit: it is the sum of the inputs mod ``2**bits`` whatever the masks; with a
deterministic ``rng_factory`` every message is byte-identical too.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import queue
import resource
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import fields
from typing import Any

import numpy as np

from secagg_rec.crypto.keys import SigningKey
from secagg_rec.crypto.random import RandomSource
from secagg_rec.secagg.config import SecAggConfig
from secagg_rec.secagg.driver import (
    ClientReply,
    InputSource,
    LocalClients,
    ProgressCallback,
    RoundResult,
    drive_round,
)

__all__ = ["ProcessPoolClients", "run_round_pool"]

_POLL_SECONDS = 0.5
_START_TIMEOUT = 300.0


def _config_kwargs(config: SecAggConfig) -> dict[str, Any]:
    kwargs = {f.name: getattr(config, f.name) for f in fields(config)}
    kwargs["verify_keys"] = dict(config.verify_keys)
    return kwargs


def _picklable_exception(exc: BaseException) -> BaseException:
    try:
        pickle.dumps(exc)
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _worker_main(init: bytes, inbox: Any, outbox: Any) -> None:
    """Worker process: build the owned clients, then answer stage chunks until told to stop."""
    try:
        payload = pickle.loads(init)
        config = SecAggConfig(**payload["config"])
        keys = {c: SigningKey(private=b) for c, b in payload["keys"].items()}
        runner = LocalClients(
            config,
            payload["inputs"],
            rng_factory=payload["rng_factory"],
            signing_keys=keys or None,
            client_ids=payload["client_ids"],
        )
    except BaseException as exc:
        outbox.put(("raise", _picklable_exception(exc), traceback.format_exc()))
        return
    outbox.put(("ready", os.getpid()))
    while True:
        command = inbox.get()
        if command[0] == "stop":
            outbox.put(("bye", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
            return
        _, stage, batch = command
        try:
            for reply in runner.run_stage(stage, batch):
                outbox.put(("reply", reply))
        except BaseException as exc:
            outbox.put(("raise", _picklable_exception(exc), traceback.format_exc()))
            return


class ProcessPoolClients:
    """A :class:`~secagg_rec.secagg.driver.ClientRunner` whose clients live in workers.

    Use as a context manager (or call :meth:`close`), and pass it to
    :func:`~secagg_rec.secagg.driver.drive_round`; :func:`run_round_pool` does both.

    Args:
        config: the round configuration.
        inputs: client id -> words: a picklable callable (called in the worker that
            owns the client, when its masked input is due) or a mapping (each worker
            receives its clients' entries).
        workers: worker processes, ``>= 1`` (2 on a 2-core machine).
        rng_factory: picklable ``client id -> RandomSource`` (default: OS CSPRNG).
        signing_keys: client id -> Ed25519 key (authenticated mode); each worker gets
            the private bytes of its own clients only.
        start_method: ``"forkserver"`` (default where available) or ``"spawn"``.
        chunk_bytes: target bytes of replies per chunk (two chunks in flight).

    Raises:
        ValueError: ``workers < 1``, a bad start method or chunk size.
        TypeError: ``inputs`` or ``rng_factory`` cannot be pickled.
        RuntimeError: a worker could not start (its error is chained).
    """

    def __init__(
        self,
        config: SecAggConfig,
        inputs: InputSource,
        *,
        workers: int = 2,
        rng_factory: Callable[[int], RandomSource] | None = None,
        signing_keys: Mapping[int, SigningKey] | None = None,
        start_method: str | None = None,
        chunk_bytes: int = 32 << 20,
    ) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        if start_method not in ("spawn", "forkserver"):
            raise ValueError(f"start_method must be 'spawn' or 'forkserver', got {start_method!r}")
        if not isinstance(chunk_bytes, int) or chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be an int >= 1, got {chunk_bytes!r}")
        for name, obj in (("inputs", inputs), ("rng_factory", rng_factory)):
            if callable(obj):
                try:
                    pickle.dumps(obj)
                except Exception as exc:
                    raise TypeError(
                        f"{name} must be picklable to run in worker processes (a module-level "
                        f"function or an object of a module-level class): {exc}"
                    ) from None
        self.config = config
        self.workers = min(workers, config.n)
        self._word = 4 if config.bits <= 32 else 8
        self._chunk_bytes = chunk_bytes
        self._owner = {cid: i % self.workers for i, cid in enumerate(config.client_ids)}
        ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            ctx.set_forkserver_preload([__name__])  # applies when the server first starts
        self._inboxes: list[Any] = []
        self._outboxes: list[Any] = []
        self._procs: list[Any] = []
        self._broken = False
        self.pids: list[int] = []
        #: peak resident memory of each worker, MiB, filled in by :meth:`close`
        self.worker_peak_rss_mb: list[float] = []
        keys = dict(signing_keys or {})
        try:
            for w in range(self.workers):
                owned = tuple(c for c in config.client_ids if self._owner[c] == w)
                if callable(inputs):
                    worker_inputs: Any = inputs
                else:
                    worker_inputs = {c: np.asarray(inputs[c]) for c in owned if c in inputs}
                init = pickle.dumps(
                    {
                        "config": _config_kwargs(config),
                        "client_ids": owned,
                        "inputs": worker_inputs,
                        "rng_factory": rng_factory,
                        "keys": {c: keys[c].private_bytes() for c in owned if c in keys},
                    }
                )
                inbox, outbox = ctx.Queue(), ctx.Queue()
                proc = ctx.Process(
                    target=_worker_main,
                    args=(init, inbox, outbox),
                    name=f"secagg-client-worker-{w}",
                    daemon=True,
                )
                proc.start()
                self._inboxes.append(inbox)
                self._outboxes.append(outbox)
                self._procs.append(proc)
            for w in range(self.workers):
                kind, *rest = self._get(w, timeout=_START_TIMEOUT)
                if kind != "ready":
                    raise RuntimeError(f"worker {w} sent {kind!r} instead of ready")
                self.pids.append(rest[0])
        except BaseException:
            self.close()
            raise

    # -- context manager ------------------------------------------------------------

    def __enter__(self) -> ProcessPoolClients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (idempotent); terminate any that do not exit in time.

        Workers that stop cleanly report their peak memory (:attr:`worker_peak_rss_mb`).
        """
        stopping = []
        for w, (inbox, proc) in enumerate(zip(self._inboxes, self._procs, strict=False)):
            if proc.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    inbox.put(("stop",))
                    stopping.append(w)
        if not self._broken:
            for w in stopping:
                with contextlib.suppress(Exception):
                    msg = self._outboxes[w].get(timeout=10)
                    if msg[0] == "bye":
                        kib = msg[1]
                        self.worker_peak_rss_mb.append(
                            kib / (1 << 20) if sys.platform == "darwin" else kib / 1024)
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        for q in (*self._inboxes, *self._outboxes):
            q.cancel_join_thread()
            q.close()
        self._inboxes, self._outboxes, self._procs = [], [], []

    # -- the runner protocol --------------------------------------------------------

    def _get(self, w: int, timeout: float | None = None) -> tuple[Any, ...]:
        waited = 0.0
        while True:
            try:
                msg = self._outboxes[w].get(timeout=_POLL_SECONDS)
            except queue.Empty:
                proc = self._procs[w]
                if not proc.is_alive():
                    self._broken = True
                    raise RuntimeError(
                        f"client worker {w} (pid {proc.pid}) exited with code {proc.exitcode}"
                    ) from None
                waited += _POLL_SECONDS
                if timeout is not None and waited >= timeout:
                    self._broken = True
                    raise RuntimeError(f"client worker {w} did not answer in {timeout} s") from None
                continue
            if msg[0] == "raise":
                self._broken = True
                exc, text = msg[1], msg[2]
                if hasattr(exc, "add_note"):  # Python >= 3.11
                    exc.add_note(f"in client worker {w}:\n{text}")
                raise exc
            return msg

    def _reply_estimate(self, stage: str) -> int:
        return self.config.dim * self._word + 64 if stage == "masked" else 1024

    def run_stage(self, stage: str, items: Iterable[tuple[int, bytes]]) -> Iterator[ClientReply]:
        """Send ``items`` to the owning workers in chunks; yield replies in item order.

        Raises:
            RuntimeError: the pool was broken by an earlier error, or a worker died.
            Any exception a worker raised (other than a client's ``SecAggError``).
        """
        if self._broken or not self._procs:
            raise RuntimeError("the client pool is closed or broken by an earlier error")
        source = iter(items)
        per_reply = self._reply_estimate(stage)
        order: deque[tuple[int, int]] = deque()  # (worker, client id), consumption order
        chunks: deque[int] = deque()  # replies per chunk in flight

        def send_chunk() -> None:
            batches: list[list[tuple[int, bytes]]] = [[] for _ in range(self.workers)]
            count = size = 0
            for cid, down in source:
                w = self._owner[cid]
                batches[w].append((cid, down))
                order.append((w, cid))
                count += 1
                size += len(down) + per_reply
                if size >= self._chunk_bytes or count >= 256 * self.workers:
                    break
            for w, batch in enumerate(batches):
                if batch:
                    self._inboxes[w].put(("stage", stage, batch))
            if count:
                chunks.append(count)

        finished = False
        try:
            send_chunk()
            send_chunk()
            while chunks:
                for _ in range(chunks[0]):
                    w, cid = order.popleft()
                    kind, reply = self._get(w)
                    if kind != "reply" or reply.client_id != cid:
                        self._broken = True
                        raise RuntimeError(
                            f"client worker {w} answered out of order ({kind}, expected {cid})"
                        )
                    yield reply
                chunks.popleft()
                send_chunk()
            finished = True
        finally:
            if not finished:  # stopped mid-stage: queued work would poison the next stage
                self._broken = True


def run_round_pool(
    config: SecAggConfig,
    inputs: InputSource,
    *,
    workers: int = 2,
    dropouts: Mapping[int, str] | None = None,
    rng_factory: Callable[[int], RandomSource] | None = None,
    signing_keys: Mapping[int, SigningKey] | None = None,
    on_progress: ProgressCallback | None = None,
    start_method: str | None = None,
) -> RoundResult:
    """:func:`~secagg_rec.secagg.driver.run_round` with the clients in ``workers`` processes.

    Same arguments and result as ``run_round`` (``inputs`` and ``rng_factory`` must be
    picklable); the aggregate, survivors, bytes and errors are identical to a
    single-process run of the same clients. Compute seconds are measured inside the
    workers, so on a busy machine they include contention between processes.

    Raises:
        ValueError: a bad dropout schedule, missing signing keys or ``workers < 1``
            (before any process starts).
        TypeError: ``inputs`` or ``rng_factory`` cannot be pickled.
        RuntimeError: a worker died.
    """
    from secagg_rec.secagg.driver import _validate_dropouts, _validate_keys

    dropouts = dict(dropouts or {})
    _validate_dropouts(config, dropouts)
    _validate_keys(config, signing_keys)
    with ProcessPoolClients(
        config,
        inputs,
        workers=workers,
        rng_factory=rng_factory,
        signing_keys=signing_keys,
        start_method=start_method,
    ) as runner:
        return drive_round(config, runner, dropouts=dropouts, on_progress=on_progress)
