"""Many active loans at once, for the crash test and the benchmark: copies of a template loan made
through the real path, written with set-based SQL (loan accounts, loans, installments, and the
disbursement journals that justify the accounts' balances, so `ledger verify` stays clean).

A copy differs from its template only in its keys; it owes the same schedule from the same date.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from activities.ledger import batch
from activities.ledger.chart import EQUITY, gl_code

# postings.line is SMALLINT: one disbursement journal carries at most this many copies.
LINES_PER_JOURNAL = 30000


async def _columns(session: AsyncSession, table: str) -> list[str]:
    rows = await session.execute(
        text(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = :t AND table_schema = current_schema() "
            "AND column_name <> 'id' ORDER BY ordinal_position"
        ),
        {"t": table},
    )
    return [r[0] for r in rows]


def _select(columns: list[str], overrides: dict[str, str], alias: str) -> tuple[str, str]:
    names = ", ".join(columns)
    values = ", ".join(overrides.get(c, f"{alias}.{c}") for c in columns)
    return names, values


async def clone_loans(session: AsyncSession, template_loan_id: int, count: int, tag: str) -> int:
    """`count` copies of the template loan; returns how many were written."""
    t = await session.execute(
        text(
            "SELECT l.ledger_account_id, l.principal_minor, l.currency, l.disbursed_on "
            "FROM loans l WHERE l.id = :id"
        ),
        {"id": template_loan_id},
    )
    account_id, principal, currency, disbursed_on = t.one()
    params = {"tid": template_loan_id, "aid": account_id, "n": count, "tag": tag}
    names, values = _select(
        await _columns(session, "ledger_accounts"),
        {
            "code": "'BL' || :tag || g",
            "debits_posted_minor": str(principal),
            "credits_posted_minor": "0",
        },
        "a",
    )
    await session.execute(
        text(
            f"INSERT INTO ledger_accounts ({names}) SELECT {values} FROM ledger_accounts a "
            "CROSS JOIN generate_series(1, :n) g WHERE a.id = :aid ORDER BY g"
        ),
        params,
    )
    names, values = _select(
        await _columns(session, "loans"),
        {
            "loan_number": "'B' || :tag || g",
            "idempotency_key": "'bench-' || :tag || g",
            "workflow_id": "'bench-loan-' || :tag || g",
            "ledger_account_id": "a.id",
        },
        "l",
    )
    await session.execute(
        text(
            f"INSERT INTO loans ({names}) SELECT {values} FROM loans l "
            "CROSS JOIN generate_series(1, :n) g "
            "JOIN ledger_accounts a ON a.code = 'BL' || :tag || g WHERE l.id = :tid ORDER BY g"
        ),
        params,
    )
    await session.execute(
        text(
            "INSERT INTO loan_terms (loan_id, product_snapshot) SELECT c.id, t.product_snapshot "
            "FROM loan_terms t "
            "CROSS JOIN (SELECT id FROM loans WHERE loan_number LIKE 'B' || :tag || '%') c "
            "WHERE t.loan_id = :tid"
        ),
        params,
    )
    names, values = _select(await _columns(session, "loan_installments"), {"loan_id": "c.id"}, "i")
    await session.execute(
        text(
            f"INSERT INTO loan_installments ({names}) SELECT {values} FROM loan_installments i "
            "CROSS JOIN (SELECT id FROM loans WHERE loan_number LIKE 'B' || :tag || '%') c "
            "WHERE i.loan_id = :tid"
        ),
        params,
    )
    ids = [
        r[0]
        for r in await session.execute(
            text("SELECT id FROM ledger_accounts WHERE code LIKE 'BL' || :tag || '%' ORDER BY id"),
            params,
        )
    ]
    equity = await session.scalar(
        text("SELECT id FROM ledger_accounts WHERE code = :c"), {"c": gl_code(EQUITY, currency)}
    )
    for start in range(0, len(ids), LINES_PER_JOURNAL):
        chunk = ids[start : start + LINES_PER_JOURNAL]
        lines = [(a, int(equity), int(principal), str(currency)) for a in chunk]
        await batch.insert_journal(
            session,
            journal_id=f"bench-disbursement-{tag}-{start}",
            kind="loan_disbursement",
            description="bench loans",
            value_date=disbursed_on,
            lines=lines,
        )
    await session.execute(
        text(
            "UPDATE ledger_accounts SET credits_posted_minor = credits_posted_minor + :amount "
            "WHERE id = :id"
        ),
        {"amount": int(principal) * len(ids), "id": equity},
    )
    return len(ids)
