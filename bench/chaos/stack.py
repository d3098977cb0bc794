"""The chaos suite's own stack of real processes, and the faults it injects into them.

Everything runs from this checkout's virtualenv on free loopback ports, under one work
directory: a private Postgres cluster from the local binaries, the Temporal dev server (SQLite
file, so a restart keeps its state), the worker and the API. Each process is started in a session
of its own, so a stop or a SIGKILL reaches its whole process group; `stop()` is idempotent and is
also registered with atexit, so nothing outlives the harness.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from scripts import local_postgres
from scripts.dev import api_command, http_ok
from scripts.temporal_dev import register_search_attributes, temporal_command, temporal_healthy

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
READY_TIMEOUT = 120.0
DATABASE = "bankflow"


class StackError(Exception):
    """A process of the stack did not start or answer; the message names its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def venv_tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def wait_for(
    what: str, ready: Callable[[], bool], log: Path, timeout: float = READY_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {timeout:.0f} s; see {log}")
        time.sleep(0.2)


@dataclass
class Service:
    """One long-running child: started, SIGKILLed and started again by the harness."""

    name: str
    cmd: list[str]
    log: Path
    env: Mapping[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        with open(self.log, "ab") as out:
            out.write(f"\n=== chaos: start #{self.starts} of {self.name} ===\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=ROOT,
                env=dict(self.env) if self.env is not None else None,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, sig: signal.Signals = signal.SIGKILL, grace: float = 30.0) -> None:
        """Signal the whole process group and reap it; SIGKILL if it outlives `grace`."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            proc.wait()


@dataclass
class Stack:
    """Postgres, Temporal, worker and API of one chaos run, under `workdir`."""

    workdir: Path
    keep: bool = False
    secret: str = field(default_factory=lambda: secrets.token_hex(32))
    payload_keys: str = field(default_factory=lambda: f"chaos:{secrets.token_urlsafe(48)}")
    pg_port: int = field(default_factory=free_port)
    temporal_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    api_workers: int = 1
    postgres: subprocess.Popen[bytes] | None = None
    services: dict[str, Service] = field(default_factory=dict)
    server_url: str = ""
    database: local_postgres.AppDatabase | None = None
    _stopped: bool = False

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def pg_data(self) -> Path:
        return self.workdir / "postgres" / "data"

    @property
    def temporal_address(self) -> str:
        return f"{HOST}:{self.temporal_port}"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def app_database(self) -> local_postgres.AppDatabase:
        if self.database is None:
            raise StackError("the database is not provisioned yet")
        return self.database

    def service_env(self) -> dict[str, str]:
        """The environment of every bankflow process (CLI, worker, API). The one place the
        database URLs and secrets are wired: a runtime role or a separate migration URL goes
        here."""
        # Not the caller's key settings (a test run exports its own ring): this stack's only.
        inherited = {
            k: v
            for k, v in os.environ.items()
            if k
            not in {
                "BANKFLOW_JWT_SECRET",
                "BANKFLOW_JWT_KEYS",
                "BANKFLOW_PAYLOAD_KEYS",
                "BANKFLOW_ENV",
            }
        }
        return {
            **inherited,
            # Least privilege as in production: migrations as the owner, everything else as the
            # runtime role that cannot rewrite the ledger.
            "BANKFLOW_DATABASE_URL": self.app_database.runtime_url,
            "BANKFLOW_MIGRATION_DATABASE_URL": self.app_database.owner_url,
            "BANKFLOW_TEMPORAL_ADDRESS": self.temporal_address,
            "BANKFLOW_JWT_KEYS": f"chaos:{self.secret}",
            "BANKFLOW_PAYLOAD_KEYS": self.payload_keys,
            "PYTHONUNBUFFERED": "1",
        }

    # --- start and stop ---------------------------------------------------------------------

    def start(self) -> None:
        atexit.register(self.stop)
        self.logs.mkdir(parents=True, exist_ok=True)
        binary = venv_tool("temporal")
        cmd = temporal_command(
            binary, self.workdir / "temporal.db", port=self.temporal_port, ui_port=free_port()
        )
        self._service("temporal", [*cmd, "--headless", "--log-level", "error"], env=None)
        self.start_postgres()
        self.database = local_postgres.provision(self.server_url, DATABASE)
        env = self.service_env()
        self.run_cli("db", "upgrade")
        self.run_cli("seed", "demo")
        self.wait_temporal()
        register_search_attributes(binary, self.temporal_address)
        self._service("worker", [sys.executable, "worker.py"], env)
        self._service(
            "api", [*api_command(self.api_port, self.api_workers), "--no-access-log"], env
        )
        self.wait_api()

    def _check_running(self) -> None:
        """A start or restart after stop() (Ctrl-C during set-up or a fault) must not leak."""
        if self._stopped:
            raise StackError("the stack was stopped")

    def _service(self, name: str, cmd: list[str], env: Mapping[str, str] | None) -> None:
        self._check_running()
        service = Service(name, cmd, self.logs / f"{name}.log", env)
        self.services[name] = service
        service.start()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for name in ("api", "worker", "temporal"):
            if name in self.services:
                self.services[name].kill(signal.SIGTERM, grace=20.0)
        if self.postgres is not None:
            self.stop_postgres("fast")
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def run_cli(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """A `bankflow` command against this stack; raises with its output if it fails."""
        done = self.cli(*args, timeout=timeout)
        if done.returncode != 0:
            raise StackError(f"bankflow {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done

    def cli(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [venv_tool("bankflow"), *args],
            cwd=ROOT,
            env=self.service_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ledger_verify(self) -> tuple[bool, list[str]]:
        """`bankflow ledger verify --json`: whether it passed, and the breached checks."""
        done = self.cli("ledger", "verify", "--json")
        try:
            report = json.loads(done.stdout)
        except ValueError:
            return False, [f"no report (exit {done.returncode}): {done.stderr.strip()[-300:]}"]
        breached = [f"{c['name']}: {c.get('detail', '')}" for c in report["checks"] if not c["ok"]]
        return done.returncode == 0 and bool(report["ok"]), breached

    # --- readiness --------------------------------------------------------------------------

    def wait_temporal(self) -> None:
        binary = venv_tool("temporal")
        wait_for(
            "Temporal",
            lambda: temporal_healthy(binary, self.temporal_address),
            self.logs / "temporal.log",
        )

    def wait_api(self) -> None:
        wait_for("API /health", lambda: http_ok(f"{self.api_url}/health"), self.logs / "api.log")

    # --- Postgres ---------------------------------------------------------------------------

    def start_postgres(self) -> None:
        self._check_running()
        self.server_url, self.postgres = local_postgres.start_private(self.pg_data, self.pg_port)

    def stop_postgres(self, mode: str) -> None:
        """`pg_ctl stop -m <mode>` (immediate: a crash, recovery at the next start; fast:
        clients disconnected, a checkpoint)."""
        owner = "postgres" if os.geteuid() == 0 else None
        pg_ctl = local_postgres._bin("pg_ctl")
        cmd = [pg_ctl, "stop", "-D", str(self.pg_data), "-m", mode, "-w", "-t", "60"]
        subprocess.run(
            local_postgres._as_owner(cmd, owner),
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if self.postgres is not None:
            try:
                self.postgres.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.postgres.pid, signal.SIGKILL)
                self.postgres.wait()

    # --- faults: each kills or stops a component and brings it back, as a supervisor would --

    def kill_worker(self) -> None:
        self._restart("worker")

    def kill_api(self) -> None:
        self._restart("api")
        self.wait_api()

    def kill_temporal(self) -> None:
        self._restart("temporal")
        self.wait_temporal()

    def _restart(self, name: str) -> None:
        self.services[name].kill()
        self._check_running()
        self.services[name].start()

    def restart_postgres(self, mode: str) -> None:
        self.stop_postgres(mode)
        self.start_postgres()
