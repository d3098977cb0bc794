"""Find a reachable Postgres, or start a private one from the local binaries under a data dir;
create an app database with its two roles.

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
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import errors, sql

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
                # A million-account month-end writes about 1.5 GB of WAL and a million-loan daily
                # job about 6.5 GB: with the default 1 GB each run forced checkpoints (and full
                # page images after each); see the batch benches' postgres line.
                "-c",
                "max_wal_size=8GB",
                "-c",
                "checkpoint_timeout=15min",
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


def _admin(url: str) -> str:
    return with_database(url, "postgres").replace("postgresql+psycopg://", "postgresql://")


def with_user(url: str, user: str) -> str:
    """`url` logging in as `user` (no password: the dev and test servers trust local users)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    return parts._replace(netloc=f"{user}@{host}:{parts.port or 5432}").geturl()


def create_database(url: str, database: str, *, owner: str | None = None) -> str:
    """Create `database` on the server of `url` if missing; returns the URL naming it."""
    with psycopg.connect(_admin(url), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database))
            if owner:
                create += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
            try:
                conn.execute(create)
            except errors.DuplicateDatabase:
                pass  # created by a concurrent launcher or test run since we looked
    return with_database(url, database)


def drop_database(url: str, database: str) -> None:
    with psycopg.connect(_admin(url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )


# --- an app database and its two roles ---------------------------------------------------------


@dataclass(frozen=True)
class AppDatabase:
    """A database owned by its own role, with a runtime role for API, worker and CLI."""

    name: str
    owner_url: str  # BANKFLOW_MIGRATION_DATABASE_URL: `bankflow db upgrade`
    runtime_url: str  # BANKFLOW_DATABASE_URL: everything else

    @property
    def owner(self) -> str:
        return role_names(self.name)[0]

    @property
    def runtime(self) -> str:
        return role_names(self.name)[1]


def role_names(database: str) -> tuple[str, str]:
    """The owner and runtime roles of a database, named after it: roles are cluster-wide, and
    one pair per database keeps test runs and launchers sharing a server out of each other's way."""
    return f"{database}_owner", f"{database}_app"


def _create_role(conn: psycopg.Connection[tuple[object, ...]], role: str) -> None:
    """Create a plain login role unless it exists; safe when another process does it at once."""
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        return
    try:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(
                sql.Identifier(role)
            )
        )
    except (errors.DuplicateObject, errors.UniqueViolation):
        pass  # a concurrent CREATE ROLE won; both name the same plain role


# A database made before it had an owner role (an older `make run`) keeps its tables owned by
# whoever created them; hand tables, free-standing sequences and functions to the owner so its
# migrations can alter them. A no-op on a database the owner built.
ADOPT = """
DO $$
DECLARE stmt text;
BEGIN
    FOR stmt IN
        SELECT format('ALTER %s %s OWNER TO %I',
                      CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.oid::regclass, {owner})
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S')
          AND pg_get_userbyid(c.relowner) <> {owner}
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.objid = c.oid AND d.classid = 'pg_class'::regclass
                            AND d.deptype IN ('a', 'i'))
        UNION ALL
        SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, {owner})
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> {owner}
    LOOP
        EXECUTE stmt;
    END LOOP;
END $$
"""


def provision(url: str, database: str) -> AppDatabase:
    """The database (created if missing, owned by its owner role) and both roles; idempotent.

    The runtime role may connect and use the schema; its table privileges come from every
    migration run (activities.migrate.grant_runtime), since the tables do not exist yet.
    """
    owner, runtime = role_names(database)
    with psycopg.connect(_admin(url), autocommit=True) as conn:
        _create_role(conn, owner)
        _create_role(conn, runtime)
    app_url = create_database(url, database, owner=owner)
    names = {"db": sql.Identifier(database), "owner": sql.Identifier(owner)}
    with psycopg.connect(app_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {db} OWNER TO {owner}").format(**names))
        conn.execute(
            sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {runtime}").format(
                **names, runtime=sql.Identifier(runtime)
            )
        )
        conn.execute(sql.SQL(ADOPT).format(owner=sql.Literal(owner)))
    return AppDatabase(database, with_user(app_url, owner), with_user(app_url, runtime))


def drop_app_database(url: str, database: str) -> None:
    """Drop the database, then its two roles (nothing else can hold privileges of theirs)."""
    drop_database(url, database)
    with psycopg.connect(_admin(url), autocommit=True) as conn:
        for role in role_names(database):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def database_identity(url: str, database: str) -> str:
    """What tells this database from every other: the cluster's system identifier (new at every
    initdb) and the database's oid (new when it is dropped and made again)."""
    with psycopg.connect(_admin(url)) as conn:
        row = conn.execute(
            "SELECT (SELECT system_identifier FROM pg_control_system()), oid "
            "FROM pg_database WHERE datname = %s",
            (database,),
        ).fetchone()
    if row is None:
        raise RuntimeError(f"no database {database!r}")
    return f"{row[0]}-{row[1]}"
