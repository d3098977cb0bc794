"""Find a reachable Postgres, or start a private one from the local binaries under a data dir.

Used by the dev launcher and the test harness. initdb refuses to run as root, so as root the
private cluster is owned by (and run as) the `postgres` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bankflow"
PRIVATE_PORT = 54329


def reachable(url: str, timeout: float = 1.0) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout):
            return True
    except OSError:
        return False


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if not candidates:
        raise RuntimeError(f"no {name} binary: install PostgreSQL or set DATABASE_URL")
    return candidates[0]


def _as_owner(cmd: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *cmd] if owner else cmd


def start_private(data_dir: Path, port: int = PRIVATE_PORT) -> tuple[str, subprocess.Popen[bytes]]:
    """Start (initialising if needed) a private cluster; returns its URL and the server process."""
    owner = "postgres" if os.geteuid() == 0 else None
    data_dir.mkdir(parents=True, exist_ok=True)
    if owner:
        pw = pwd.getpwnam(owner)
        # Only the parents: Postgres refuses to start on a data dir that others may enter.
        for path in data_dir.parents:
            if path == Path("/"):
                break
            if path.stat().st_mode & 0o001 == 0:
                path.chmod(path.stat().st_mode | 0o001)  # let the owner traverse to its data dir
        os.chown(data_dir, pw.pw_uid, pw.pw_gid)
    if not (data_dir / "PG_VERSION").exists():
        subprocess.run(
            _as_owner(
                [
                    _bin("initdb"),
                    "-D",
                    str(data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                ],
                owner,
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    log = open(data_dir.parent / "postgres.log", "ab")
    proc = subprocess.Popen(
        _as_owner(
            [
                _bin("postgres"),
                "-D",
                str(data_dir),
                "-p",
                str(port),
                "-k",
                str(data_dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",
                "-c",
                "fsync=off" if os.environ.get("BANKFLOW_PG_FSYNC_OFF") else "fsync=on",
            ],
            owner,
        ),
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/bankflow"
    deadline = time.monotonic() + 30
    while not reachable(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                f"private Postgres did not start; see {data_dir.parent}/postgres.log"
            )
        time.sleep(0.2)
    time.sleep(0.5)
    return url, proc


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path=f"/{database}").geturl()


def create_database(url: str, database: str, *, drop_first: bool = False) -> str:
    """Create `database` on the server of `url` if missing; returns the URL naming it."""
    import psycopg

    admin = with_database(url, "postgres").replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        if drop_first:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
    return with_database(url, database)


def drop_database(url: str, database: str) -> None:
    import psycopg

    admin = with_database(url, "postgres").replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
