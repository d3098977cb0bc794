"""The `bankflow` CLI end to end on its own database, as deployed: `db upgrade` as the owning role,
every other command as the runtime role; migrate, seed, verify, and verify catching a breach (a
cached balance rewritten, a posting rewritten by the owner behind disabled triggers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from scripts.local_postgres import AppDatabase, drop_app_database, provision

BANKFLOW = str(Path(sys.executable).parent / "bankflow")


@pytest.fixture
def cli_db(pg_server: str) -> Iterator[AppDatabase]:
    database = provision(pg_server, f"bankflow_cli_{uuid.uuid4().hex[:8]}")
    yield database
    drop_app_database(pg_server, database.name)


def bankflow(db: AppDatabase, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BANKFLOW_DATABASE_URL": db.runtime_url,
        "BANKFLOW_MIGRATION_DATABASE_URL": db.owner_url,
        "COLUMNS": "200",
        **extra_env,
    }
    return subprocess.run([BANKFLOW, *args], env=env, capture_output=True, text=True, timeout=120)


def sql(url: str, *statements: str) -> None:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def test_seed_is_idempotent_and_verify_catches_breaches(
    cli_db: AppDatabase, tmp_path: Path
) -> None:
    assert bankflow(cli_db, "db", "upgrade").returncode == 0
    tokens = tmp_path / "tokens.json"
    first = bankflow(cli_db, "seed", "demo", "--tokens-file", str(tokens))
    assert first.returncode == 0, first.stderr
    assert set(json.loads(tokens.read_text())) >= {"teller1", "manager1", "admin", "finance1"}
    assert bankflow(cli_db, "seed", "demo").returncode == 0  # again: nothing new posted
    # the imported demo loan: once, active, disbursed 100 days ago with its 12 installments
    with psycopg.connect(cli_db.runtime_url.replace("+psycopg", "")) as conn:
        loans = conn.execute(
            "SELECT state, current_date - disbursed_on, "
            "(SELECT count(*) FROM loan_installments i WHERE i.loan_id = l.id), "
            "(SELECT count(*) FROM journals j WHERE j.kind = 'loan_disbursement') FROM loans l"
        ).fetchall()
    assert loans == [("active", 100, 12, 1)]
    ok = bankflow(cli_db, "ledger", "verify", "--json")
    assert ok.returncode == 0, ok.stdout
    assert json.loads(ok.stdout)["ok"] is True

    sql(
        cli_db.owner_url,
        "UPDATE ledger_accounts SET credits_posted_minor = credits_posted_minor + 1 "
        "WHERE code = 'SV' || lpad((SELECT min(id) FROM ledger_accounts "
        "WHERE kind = 'savings')::text, 8, '0')",
    )
    broken = bankflow(cli_db, "ledger", "verify")
    assert broken.returncode == 1
    assert "BREACH cached posted balances equal the sum of postings" in broken.stdout


def test_verify_catches_a_rewritten_posting(cli_db: AppDatabase) -> None:
    assert bankflow(cli_db, "db", "upgrade").returncode == 0
    assert bankflow(cli_db, "seed", "demo").returncode == 0
    sql(
        cli_db.owner_url,
        "ALTER TABLE postings DISABLE TRIGGER postings_append_only",
        "UPDATE postings SET amount_minor = amount_minor + 1 WHERE journal_id = 'seed-capital'",
    )
    report = json.loads(bankflow(cli_db, "ledger", "verify", "--json").stdout)
    failed = {c["name"] for c in report["checks"] if not c["ok"]}
    assert failed == {
        "append-only triggers are in place",
        "every journal's postings match its content hash",
        "cached posted balances equal the sum of postings",
    }


def test_users_create_refuses_unknown_role_and_duplicates(cli_db: AppDatabase) -> None:
    assert bankflow(cli_db, "db", "upgrade").returncode == 0
    pw = {"BANKFLOW_NEW_USER_PASSWORD": "correct horse battery"}
    user = ["users", "create", "--full-name", "Zed", "--role", "teller"]
    made = bankflow(cli_db, *user, "--username", "zed", "--role", "ops", **pw)
    assert made.returncode == 0, made.stderr
    again = bankflow(cli_db, *user, "--username", "zed", **pw)
    assert again.returncode == 1 and "Duplicate" in again.stderr
    bad = bankflow(cli_db, *user, "--username", "amy", "--role", "wizard", **pw)
    assert bad.returncode == 1 and "unknown role" in bad.stderr


def test_seed_demo_refuses_to_sign_tokens_without_a_real_key(cli_db: AppDatabase) -> None:
    assert bankflow(cli_db, "db", "upgrade").returncode == 0
    done = bankflow(cli_db, "seed", "demo", BANKFLOW_JWT_KEYS="")
    assert done.returncode == 2
    assert "BANKFLOW_JWT_KEYS (or BANKFLOW_JWT_SECRET) is not set" in done.stderr


def test_chart_init_and_a_repeated_upgrade_work_as_the_roles_they_run_as(
    cli_db: AppDatabase,
) -> None:
    assert bankflow(cli_db, "db", "upgrade").returncode == 0
    again = bankflow(cli_db, "db", "upgrade")  # nothing pending: the grants are re-applied
    assert again.returncode == 0, again.stderr
    kes = bankflow(cli_db, "chart", "init", "--currency", "KES")
    assert kes.returncode == 0, kes.stderr
    assert "chart of accounts in KES" in kes.stdout
    with psycopg.connect(cli_db.runtime_url.replace("+psycopg", "")) as conn:
        count = conn.execute("SELECT count(*) FROM ledger_accounts WHERE currency = 'KES'")
        assert (count.fetchone() or (0,))[0] > 0
        owners = conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    assert owners == [(cli_db.owner,)]  # migrations made every table as the owner
