"""The plain-SQL floor `bench/ledger.py` compares the ledger engine with."""

from __future__ import annotations

from datetime import date

import psycopg
from sqlalchemy import text

from activities.direct import compiled
from activities.ledger.batch import content_hash

# The plain-SQL floor of one posting: one statement per journal that locks both accounts (in id
# order, as the engine does, or two journals on the same pair deadlock), inserts the journal and
# its posting and moves both cached balances, on the real tables with their constraints, triggers
# and indexes, and the same content hash `ledger verify` checks.
FLOOR = text(
    """
    WITH l AS (
        SELECT id FROM ledger_accounts WHERE id IN (:debit, :credit) ORDER BY id
        FOR NO KEY UPDATE
    ), j AS (
        INSERT INTO journals (id, kind, description, value_date, content_hash)
        VALUES (:id, 'transfer', 'floor', :value_date, :hash) RETURNING id
    ), p AS (
        INSERT INTO postings (journal_id, line, debit_account_id, credit_account_id,
                              amount_minor, currency)
        SELECT id, 1, :debit, :credit, :amount, 'USD' FROM j
    )
    UPDATE ledger_accounts
    SET debits_posted_minor = debits_posted_minor + CASE WHEN id = :debit THEN :amount ELSE 0 END,
        credits_posted_minor = credits_posted_minor
                               + CASE WHEN id = :credit THEN :amount ELSE 0 END
    WHERE id IN (SELECT id FROM l)
    """
)


FLOOR_SQL = compiled(FLOOR)[0]


async def post_floor(
    conn: psycopg.AsyncConnection[object], journal_id: str, debit: int, credit: int, amount: int
) -> None:
    today = date.today()
    params = {
        "id": journal_id,
        "value_date": today,
        "hash": content_hash("transfer", today, [(debit, credit, amount, "USD")]),
        "debit": debit,
        "credit": credit,
        "amount": amount,
    }
    await conn.execute(FLOOR_SQL, params)
