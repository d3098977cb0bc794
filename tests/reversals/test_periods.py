"""Period close against a real Postgres: the ledger refuses any journal dated in a closed month,
through the engine (PeriodClosed) and in the database itself (the journals trigger)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from activities.db import in_transaction
from activities.ledger import engine as ledger_engine
from activities.ledger import holds as ledger_holds
from activities.ledger.chart import CASH
from activities.ledger.periods import close_period, is_closed
from activities.ledger.verify import verify_ledger
from activities.tables import PERIOD_LOCK_CLASS
from schemas.errors import BankflowError, ErrorCode
from schemas.ledger import (
    HoldRequest,
    JournalRequest,
    PostHoldRequest,
    PostingLine,
    ReversalRequest,
)
from tests.conftest import CURRENCY, Factory, Sessions
from tests.reversals.conftest import post


async def close(sessions: Sessions, period: date) -> bool:
    _, created = await in_transaction(
        sessions, lambda s: close_period(s, period, user_id=None, username="finance-test")
    )
    return created


async def test_a_closed_month_refuses_journals_holds_posted_and_reversals(
    sessions: Sessions, factory: Factory
) -> None:
    acc = await factory.savings_account(500_00)
    cash = factory.gl(CASH.number)
    before = await post(sessions, "deposit", (cash, acc.id, 10_00), value_date=date(1991, 4, 30))
    assert await close(sessions, date(1991, 4, 1)) is True
    assert await close(sessions, date(1991, 4, 1)) is False  # closing again changes nothing

    with pytest.raises(BankflowError) as err:
        await post(sessions, "deposit", (cash, acc.id, 1_00), value_date=date(1991, 4, 1))
    assert err.value.code == ErrorCode.PERIOD_CLOSED and "1991-04" in err.value.detail
    # Neighbouring months stay open.
    await post(sessions, "deposit", (cash, acc.id, 1_00), value_date=date(1991, 5, 1))

    hold = HoldRequest(
        hold_id=f"h-{uuid.uuid4().hex}",
        debit_account_id=acc.id,
        credit_account_id=cash,
        amount_minor=5_00,
        currency=CURRENCY,
    )
    await in_transaction(sessions, lambda s: ledger_holds.place_hold(s, hold))
    posted = PostHoldRequest(
        hold_id=hold.hold_id, journal_id=f"j-{uuid.uuid4().hex}", kind="withdrawal",
        value_date=date(1991, 4, 15),
    )  # fmt: skip
    with pytest.raises(BankflowError) as err:
        await in_transaction(sessions, lambda s: ledger_holds.post_hold(s, posted))
    assert err.value.code == ErrorCode.PERIOD_CLOSED
    reversal = ReversalRequest(
        original_journal_id=before.journal_id, journal_id=f"r-{uuid.uuid4().hex}",
        value_date=date(1991, 4, 30),
    )  # fmt: skip
    with pytest.raises(BankflowError) as err:
        await in_transaction(sessions, lambda s: ledger_engine.reverse_journal(s, reversal))
    assert err.value.code == ErrorCode.PERIOD_CLOSED

    async with sessions() as s:
        assert await is_closed(s, date(1991, 4, 17)) and not await is_closed(s, date(1991, 5, 1))
    async with sessions() as s:
        assert (await verify_ledger(s)).ok


async def test_a_retry_of_a_journal_posted_before_the_close_returns_it(
    sessions: Sessions, factory: Factory
) -> None:
    acc = await factory.savings_account()
    first = await post(
        sessions, "deposit", (factory.gl(CASH.number), acc.id, 3_00), value_date=date(1992, 2, 3)
    )
    await close(sessions, date(1992, 2, 1))
    again = JournalRequest(
        journal_id=first.journal_id,
        kind="deposit",
        value_date=date(1992, 2, 3),
        postings=[PostingLine(debit_account_id=factory.gl(CASH.number), credit_account_id=acc.id,
                              amount_minor=3_00, currency=CURRENCY)],
    )  # fmt: skip
    stored = await in_transaction(sessions, lambda s: ledger_engine.post_journal(s, again))
    assert stored.journal_id == first.journal_id and not stored.created


async def test_the_database_refuses_a_journal_in_a_closed_month_and_a_reopen(
    sessions: Sessions, owner_sessions: Sessions
) -> None:
    await close(sessions, date(1993, 7, 1))
    async with sessions() as s:
        with pytest.raises(DBAPIError, match="period 1993-07 is closed"):
            await s.execute(
                text(
                    "INSERT INTO journals (id, kind, value_date, content_hash) "
                    "VALUES (:id, 'deposit', '1993-07-09', 'x')"
                ),
                {"id": f"raw-{uuid.uuid4().hex}"},
            )
    async with owner_sessions() as s:  # the trigger holds even for the owner
        with pytest.raises(DBAPIError, match="append-only"):
            await s.execute(text("DELETE FROM ledger_periods WHERE period_start = '1993-07-01'"))


async def test_the_current_month_cannot_close(sessions: Sessions) -> None:
    with pytest.raises(BankflowError) as err:
        await close(sessions, date.today().replace(day=1))
    assert err.value.code == ErrorCode.PERIOD_NOT_ENDED


async def waiting_on_period_lock(sessions: Sessions) -> bool:
    async with sessions() as s:
        waiting = await s.scalar(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND classid = :cls"
            ),
            {"cls": PERIOD_LOCK_CLASS},
        )
    return bool(waiting)


async def test_a_close_waits_for_postings_in_flight_and_later_ones_see_it(
    sessions: Sessions, factory: Factory
) -> None:
    """A posting whose transaction is open holds the month's lock: the close waits for it to
    commit; after the close, the same month refuses."""
    acc = await factory.savings_account()
    cash = factory.gl(CASH.number)
    req = JournalRequest(
        journal_id=f"j-{uuid.uuid4().hex}", kind="deposit", value_date=date(1994, 9, 9),
        postings=[PostingLine(debit_account_id=cash, credit_account_id=acc.id, amount_minor=7_00,
                              currency=CURRENCY)],
    )  # fmt: skip
    posted = asyncio.Event()
    release = asyncio.Event()

    async def slow_post() -> None:
        async def work(s):  # type: ignore[no-untyped-def]
            await ledger_engine.post_journal(s, req)
            posted.set()
            await release.wait()

        await in_transaction(sessions, work)

    poster = asyncio.create_task(slow_post())
    await posted.wait()
    closer = asyncio.create_task(close(sessions, date(1994, 9, 1)))
    while not await waiting_on_period_lock(sessions):  # the close queues behind the posting
        assert not closer.done()
        await asyncio.sleep(0.01)
    assert not closer.done()
    release.set()
    await poster
    assert await closer is True
    with pytest.raises(BankflowError) as err:
        await post(sessions, "deposit", (cash, acc.id, 1_00), value_date=date(1994, 9, 30))
    assert err.value.code == ErrorCode.PERIOD_CLOSED
    assert (await factory.account(acc.id)).credits_posted_minor == 7_00
