"""A Flower deployment on loopback for tests: one SuperLink, N SuperNodes, ``flwr run``.

Every process is started in its own session (process group) and stopped by killing
that group and every descendant found in ``/proc`` (SIGTERM, then SIGKILL): Flower's
SuperExec may start its own session, and the ClientApp/ServerApp processes it spawns
must go too. Each process gets its own ``FLWR_HOME`` under the test's
temporary directory (no shared install directory, nothing in ``~/.flwr``), Flower's
telemetry and update check are off, and ports are picked free on 127.0.0.1. Every
wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Linux ``/proc``), children first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _started_under(pid: int, root: Path) -> bool:
    """True if ``pid`` runs with ``FLWR_HOME`` inside ``root`` (so it is one of ours)."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    marker = f"FLWR_HOME={root}".encode()
    return any(entry.startswith(marker) for entry in env)


def _signal_all(leader: int, pids: list[int], sig: int, root: Path) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader, sig)
    for pid in pids:  # only processes that still carry our FLWR_HOME (no reused pids)
        if _started_under(pid, root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def _toml(values: dict[str, object]) -> str:
    """``k1=v1 k2=v2`` with TOML-compatible values (JSON strings are TOML strings)."""
    return " ".join(f"{key}={json.dumps(value)}" for key, value in values.items())


class LocalFederation:
    """``flower-superlink --insecure`` and ``flower-supernode`` processes on loopback."""

    def __init__(self, root: Path, nodes: int, *, simulation: bool = False) -> None:
        """``nodes`` SuperNodes; ``simulation``: a ``--simulation`` SuperLink whose runs
        execute in Flower's simulation runtime (Ray) instead, with ``nodes == 0``."""
        if simulation and nodes:
            raise ValueError("a simulation SuperLink runs virtual nodes only")
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.count = nodes
        self.simulation = simulation
        self.port = free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.cli_home = root / "home-cli"

    # -- processes ----------------------------------------------------------------------

    def _env(self, home: Path) -> dict[str, str]:
        home.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            FLWR_HOME=str(home),
            FLWR_TELEMETRY_ENABLED="0",
            FLWR_DISABLE_UPDATE_CHECK="1",
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
            # SuperExec looks for new ClientApp/ServerApp tasks every second by default.
            FLWR_SUPEREXEC_TASK_POLL_INTERVAL="0.2",
        )
        return env

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = self.root / f"{name}.log"
        self.logs[name] = log
        with log.open("wb") as sink:
            self.procs[name] = subprocess.Popen(
                argv,
                cwd=self.root,
                env=self._env(self.root / f"home-{name}"),
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def start(self, timeout: float = 60.0) -> None:
        self._spawn(
            "superlink",
            [
                str(BIN / "flower-superlink"),
                "--insecure",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--disable-runtime-dependency-installation",
                *(["--simulation"] if self.simulation else []),
            ],
        )

        def healthy() -> bool:
            self._check_alive("superlink")
            try:
                return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).is_success
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout, "the SuperLink to listen")
        for i in range(self.count):
            self._spawn(
                f"node{i}",
                [
                    str(BIN / "flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{self.port}",
                    "--port",
                    str(free_port()),
                    "--node-config",
                    f"partition-id={i} num-partitions={self.count}",
                    "--max-retries",
                    "5",
                    "--max-wait-time",
                    "60",
                ],
            )
        self.cli_home.mkdir(parents=True, exist_ok=True)
        (self.cli_home / "config.toml").write_text(
            '[superlink]\ndefault = "test"\n\n'
            f'[superlink.test]\naddress = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )

    def _check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")

    def run(
        self,
        app: Path,
        run_config: dict[str, object],
        *,
        federation_config: dict[str, object] | None = None,
        timeout: float = 60.0,
    ) -> str:
        """``flwr run <app> test --run-config ... [--federation-config ...]``; the run id."""
        argv = [str(BIN / "flwr"), "run", str(app), "test", "--run-config", _toml(run_config)]
        if federation_config:
            argv += ["--federation-config", _toml(federation_config)]
        out = subprocess.run(
            [*argv, "--format", "json"],
            cwd=self.root,
            env=self._env(self.cli_home),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"flwr run failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        payload = json.loads(out.stdout[out.stdout.index("{") :])
        if not payload.get("success"):
            raise RuntimeError(f"flwr run did not start: {out.stdout}")
        return str(payload["run-id"])

    def kill(self, name: str, grace: float = 5.0, *, hard: bool = False) -> None:
        """Stop ``name`` and every process it spawned.

        ``hard``: SIGKILL at once, as a crash or a pulled plug would.
        """
        proc = self.procs.get(name)
        if proc is None:
            return
        tree = [proc.pid, *descendants(proc.pid)]
        steps = [signal.SIGKILL] if hard else [signal.SIGTERM, signal.SIGKILL]
        for sig in steps:
            tree = [proc.pid, *descendants(proc.pid), *tree[1:]]
            _signal_all(proc.pid, tree, sig, self.root)
            try:
                proc.wait(timeout=grace if sig == signal.SIGTERM else 10.0)
                if not any(_started_under(pid, self.root) for pid in tree[1:]):
                    break
            except subprocess.TimeoutExpired:
                continue
        _signal_all(proc.pid, tree, signal.SIGKILL, self.root)  # stragglers

    def stop(self) -> None:
        """Stop every node, then the SuperLink, then anything left with our FLWR_HOME."""
        for name in [n for n in self.procs if n != "superlink"] + ["superlink"]:
            if name in self.procs:
                self.kill(name, grace=3.0)
        self.sweep()

    def sweep(self) -> list[int]:
        """SIGKILL every process whose FLWR_HOME lies under this federation's root."""
        killed = []
        for entry in Path("/proc").glob("[0-9]*"):
            pid = int(entry.name)
            if pid != os.getpid() and _started_under(pid, self.root):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
        return killed

    def tail(self, name: str, lines: int = 40) -> str:
        log = self.logs.get(name)
        if log is None or not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def diagnostics(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.tail(name)}" for name in self.procs)
