"""Least privilege: the runtime role (API, worker, CLI) cannot rewrite history or the schema,
whatever SQL it sends; the owner migrates; grants follow every table a migration adds."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors
from sqlalchemy import create_engine

from activities.migrate import grant_runtime
from scripts.local_postgres import AppDatabase

REFUSED = [
    "UPDATE journals SET kind = kind",
    "DELETE FROM journals",
    "UPDATE postings SET amount_minor = amount_minor",
    "DELETE FROM postings",
    "UPDATE audit_log SET outcome = outcome",
    "DELETE FROM audit_log",
    "UPDATE ledger_periods SET period_start = period_start",
    "DELETE FROM reversal_events",
    "UPDATE loan_terms SET product_snapshot = '{}'",
    "DELETE FROM loan_terms",
    "TRUNCATE journals, postings",
    "TRUNCATE audit_log",
    "TRUNCATE members",
    "ALTER TABLE postings DISABLE TRIGGER postings_append_only",
    "ALTER TABLE journals DISABLE TRIGGER ALL",
    "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
    "ALTER TABLE postings ADD COLUMN note text",
    "ALTER TABLE members DROP COLUMN email",
    "DROP TRIGGER journals_append_only ON journals",
    "DROP TABLE audit_log",
    "CREATE TABLE shadow (id int)",
    "SET session_replication_role = replica",
    "UPDATE alembic_version SET version_num = '0001'",
    "CREATE OR REPLACE FUNCTION bankflow_append_only() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
]


def plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.mark.parametrize("statement", REFUSED)
def test_runtime_role_is_refused(test_database: AppDatabase, statement: str) -> None:
    with psycopg.connect(plain(test_database.runtime_url)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (test_database.runtime,)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement)


def test_runtime_role_does_what_the_app_needs(test_database: AppDatabase) -> None:
    """Reads, inserts, row changes outside the append-only tables, sequences, temporary tables
    and advisory locks: what the activities, month-end and the daily job use."""
    with psycopg.connect(plain(test_database.runtime_url)) as conn:
        conn.execute(
            "SELECT count(*) FROM journals JOIN postings ON postings.journal_id = journals.id"
        )
        conn.execute("SELECT nextval(pg_get_serial_sequence('loans', 'id'))")
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('privileges-test', 0))")
        conn.execute("CREATE TEMP TABLE scratch ON COMMIT DROP AS SELECT id FROM ledger_accounts")
        conn.execute("UPDATE ledger_accounts SET name = name WHERE false")
        conn.execute("DELETE FROM watchlist_entries WHERE false")
        conn.execute("SELECT version_num FROM alembic_version")
        conn.rollback()


def test_grants_follow_a_table_a_later_migration_adds(test_database: AppDatabase) -> None:
    """What migrations/env.py does after every upgrade, on a table no revision knows yet: an
    ordinary table gets row access, one with the append-only trigger loses UPDATE and DELETE."""
    with psycopg.connect(plain(test_database.owner_url), autocommit=True) as owner:
        owner.execute("CREATE TABLE future_notes (id serial PRIMARY KEY, body text)")
        owner.execute("CREATE TABLE future_trail (id serial PRIMARY KEY, body text)")
        owner.execute(
            "CREATE TRIGGER future_trail_append_only BEFORE UPDATE OR DELETE ON future_trail "
            "FOR EACH ROW EXECUTE FUNCTION bankflow_append_only()"
        )
    engine = create_engine(test_database.owner_url)
    with engine.begin() as connection:
        grant_runtime(connection, test_database.runtime)
    engine.dispose()
    try:
        with psycopg.connect(plain(test_database.runtime_url), autocommit=True) as runtime:
            runtime.execute("INSERT INTO future_notes (body) VALUES ('a')")
            runtime.execute("UPDATE future_notes SET body = 'b'")
            runtime.execute("DELETE FROM future_notes")
            runtime.execute("INSERT INTO future_trail (body) VALUES ('a')")
            assert runtime.execute("SELECT count(*) FROM future_trail").fetchone() == (1,)
            for statement in ("UPDATE future_trail SET body = 'b'", "DELETE FROM future_trail"):
                with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
                    runtime.execute(statement)
    finally:
        with psycopg.connect(plain(test_database.owner_url), autocommit=True) as owner:
            owner.execute("DROP TABLE future_notes, future_trail")
