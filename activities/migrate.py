"""Schema migrations (Alembic) run from code: the CLI, the dev launcher and the tests, and the
runtime role's privileges, granted after every upgrade.

Two Postgres roles: the owner runs migrations and owns every table; the runtime role (API, worker,
CLI) reads and writes rows, but cannot alter a table, disable a trigger, truncate, or change or
delete a row of an append-only table. Grants are not a revision of their own but re-derived from
the schema on every upgrade (migrations/env.py, in the migration's transaction): a table a later
migration adds is granted with no code, and a table is append-only for the runtime role exactly
when it carries the `bankflow_append_only` trigger - the one declaration both defences share.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

ROOT = Path(__file__).resolve().parent.parent

APPEND_ONLY_TABLES = text(
    """
    SELECT DISTINCT c.relname FROM pg_trigger t
    JOIN pg_class c ON c.oid = t.tgrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_proc p ON p.oid = t.tgfoid
    WHERE p.proname = 'bankflow_append_only' AND n.nspname = current_schema()
    ORDER BY 1
    """
)


def _config(url: str, runtime_role: str | None) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["url"] = url
    cfg.attributes["runtime_role"] = runtime_role
    cfg.attributes["configure_logging"] = False
    return cfg


def upgrade(url: str, revision: str = "head", *, runtime_role: str | None = None) -> None:
    """Migrate as the owner of `url`; then grant `runtime_role` (if any) what the app needs."""
    command.upgrade(_config(url, runtime_role), revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate back to `revision` as the owner of `url` (a rolled-back deploy)."""
    command.downgrade(_config(url, None), revision)


def grant_runtime(connection: Connection, role: str) -> None:
    """Give `role` row access to every table and sequence of the schema, none to the migration
    history, and no UPDATE or DELETE on append-only tables. Idempotent; runs as the owner.

    TRUNCATE, REFERENCES and TRIGGER are never granted; ALTER TABLE (and so DISABLE TRIGGER) needs
    ownership, which stays with the owner. Temporary tables and advisory locks need nothing more.
    """
    who = connection.dialect.identifier_preparer.quote(role)
    schema = connection.dialect.identifier_preparer.quote(
        connection.execute(text("SELECT current_schema()")).scalar_one()
    )
    connection.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {who}"))
    connection.execute(
        text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {who}")
    )
    connection.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {who}"))
    connection.execute(text(f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {who}"))
    for table in connection.execute(APPEND_ONLY_TABLES).scalars():
        name = connection.dialect.identifier_preparer.quote(table)
        connection.execute(text(f"REVOKE UPDATE, DELETE ON {schema}.{name} FROM {who}"))
