"""Migration 0012 moves each loan's product snapshot out of `loans` into `loan_terms` and, on
downgrade, back: a book with loans survives the round trip with every snapshot unchanged, and
the app reads the same terms afterwards."""

from __future__ import annotations

import asyncio
from datetime import date

from sqlalchemy import create_engine, make_url, text

from activities.loan_book import product_of
from activities.migrate import downgrade, upgrade
from activities.tables import Loan
from tests.daily_loan_job.conftest import Stack


def _snapshots(url: str, sql: str) -> dict[int, object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {loan_id: snapshot for loan_id, snapshot in conn.execute(text(sql))}
    finally:
        engine.dispose()


async def test_a_book_with_loans_keeps_every_snapshot_through_0012_and_back(
    bare_stack: Stack, pg_server: str
) -> None:
    stack = bare_stack
    cash = await stack.product(accounting="cash")
    accrual = await stack.product(accounting="accrual")
    loans = [
        await stack.active_loan(cash, date(2026, 1, 1)),
        await stack.active_loan(accrual, date(2026, 2, 1), principal="700.00", repayments=6),
    ]
    database = await stack.scalar("SELECT current_database()")
    # The server's superuser stands in for the owner role: a downgrade drops and adds columns.
    owner = make_url(pg_server).set(database=database).render_as_string(hide_password=False)
    terms = "SELECT loan_id, product_snapshot FROM loan_terms ORDER BY loan_id"
    before = _snapshots(owner, terms)
    assert sorted(before) == sorted(loans)
    await stack.engine.dispose()

    await asyncio.to_thread(downgrade, owner, "0011")
    inline = _snapshots(owner, "SELECT id, product_snapshot FROM loans ORDER BY id")
    assert inline == before

    # As `bankflow db upgrade` does: the runtime role is granted the table the upgrade adds.
    runtime = make_url(stack.settings.sqlalchemy_url).username
    await asyncio.to_thread(lambda: upgrade(owner, runtime_role=runtime))
    assert _snapshots(owner, terms) == before
    async with stack.sessions() as session:
        for loan_id in loans:
            loan = await session.get(Loan, loan_id)
            assert loan is not None
            assert loan.product_snapshot == before[loan_id]
            assert product_of(loan).accounting in {"cash", "accrual"}
