"""Batch posting: one journal of thousands of lines written with set-based SQL, for the jobs that
post a line per account (month-end interest, synthetic load), inside the caller's transaction.

The engine's `post_journal` builds a model per line and locks every touched account; a batch job
has already locked its member accounts itself (in ascending id order) and knows they are open and
cannot go overdrawn by a credit, so it writes the same rows directly. What keeps the two paths one
ledger: the same content hash (`ledger verify` recomputes it from the stored postings), the same
journal row (the `journals_period_open` trigger refuses a closed month either way), and GL rows
updated last, in ascending id order, so the accounts every batch shares are held for milliseconds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from activities.db import sqlstate
from activities.tables import PERIOD_CLOSED_SQLSTATE
from schemas.errors import BankflowError, ErrorCode
from schemas.ledger import PostingLine

# (debit account id, credit account id, amount in minor units, currency): a posting as a plain
# tuple, because building twenty thousand PostingLine models per batch costs more than the SQL.
Line = tuple[int, int, int, str]

INSERT_JOURNAL = text(
    """
    INSERT INTO journals (id, kind, description, value_date, content_hash, process_id, metadata)
    VALUES (:id, :kind, :description, :value_date, :hash, :process_id, CAST(:metadata AS jsonb))
    """
)
INSERT_POSTINGS = text(
    """
    INSERT INTO postings (journal_id, line, debit_account_id, credit_account_id, amount_minor,
                          currency)
    SELECT :journal_id, l.line, l.debit, l.credit, l.amount, l.currency
    FROM unnest(CAST(:lines AS int[]), CAST(:debits AS bigint[]), CAST(:credits AS bigint[]),
                CAST(:amounts AS bigint[]), CAST(:currencies AS text[]))
         AS l(line, debit, credit, amount, currency)
    """
)
ADD_TO_BALANCES = text(
    """
    UPDATE ledger_accounts a
    SET credits_posted_minor = a.credits_posted_minor + u.credit,
        debits_posted_minor = a.debits_posted_minor + u.debit
    FROM unnest(CAST(:ids AS bigint[]), CAST(:credits AS bigint[]), CAST(:debits AS bigint[]))
         AS u(id, credit, debit)
    WHERE a.id = u.id
    """
)
UPDATE_GL = text(
    """
    UPDATE ledger_accounts
    SET debits_posted_minor = debits_posted_minor + :debit,
        credits_posted_minor = credits_posted_minor + :credit
    WHERE id = :id
    """
)


def as_lines(postings: Iterable[PostingLine]) -> list[Line]:
    return [(p.debit_account_id, p.credit_account_id, p.amount_minor, p.currency) for p in postings]


def content_hash(
    kind: str, value_date: date, lines: Iterable[Line], reverses: str | None = None
) -> str:
    """The money-relevant content of a journal, hashed so a retry can prove it asks the same.

    `ledger verify` recomputes it from the stored postings: a changed posting cannot hide.
    """
    canonical = json.dumps(
        {
            "kind": kind,
            "value_date": value_date.isoformat(),
            "reverses": reverses,
            "postings": [list(line) for line in lines],
        },
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def insert_journal(
    session: AsyncSession,
    *,
    journal_id: str,
    kind: str,
    description: str,
    value_date: date,
    lines: Sequence[Line],
    process_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    period: str | None = None,
) -> None:
    """The journal row and its postings. A value date in a closed month is PeriodClosed (named
    `period` in the message, the value date's month by default); the row is claimed in a
    savepoint so the caller's transaction stays usable for the error path."""
    params = {
        "id": journal_id,
        "kind": kind,
        "description": description,
        "value_date": value_date,
        "hash": content_hash(kind, value_date, lines),
        "process_id": process_id,
        "metadata": json.dumps(dict(metadata or {})),
    }
    try:
        async with session.begin_nested():
            await session.execute(INSERT_JOURNAL, params)
    except DBAPIError as exc:
        if sqlstate(exc) == PERIOD_CLOSED_SQLSTATE:
            raise BankflowError(
                ErrorCode.PERIOD_CLOSED,
                f"the period {period or f'{value_date:%Y-%m}'} is closed for postings",
            ) from exc
        raise
    await insert_postings(session, journal_id, lines)


async def insert_postings(session: AsyncSession, journal_id: str, lines: Sequence[Line]) -> None:
    await session.execute(
        INSERT_POSTINGS,
        {
            "journal_id": journal_id,
            "lines": list(range(1, len(lines) + 1)),
            "debits": [line[0] for line in lines],
            "credits": [line[1] for line in lines],
            "amounts": [line[2] for line in lines],
            "currencies": [line[3] for line in lines],
        },
    )


async def add_to_balances(
    session: AsyncSession, ids: Sequence[int], credits: Sequence[int], debits: Sequence[int]
) -> None:
    """Add posted credits and debits to many accounts in one statement (their rows already
    locked by the caller)."""
    await session.execute(
        ADD_TO_BALANCES, {"ids": list(ids), "credits": list(credits), "debits": list(debits)}
    )


async def update_gl(session: AsyncSession, moves: Mapping[int, tuple[int, int]]) -> None:
    """Add (debit, credit) to each GL account, in ascending id order: call it last, just before
    commit, so the rows every batch shares are locked only for that moment."""
    for account_id, (debit, credit) in sorted(moves.items()):
        await session.execute(UPDATE_GL, {"id": account_id, "debit": debit, "credit": credit})
