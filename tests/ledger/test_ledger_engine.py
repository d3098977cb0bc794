"""The ledger engine against a real Postgres: atomicity, idempotency, overdraft, holds,
reversals, immutability and concurrency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import date

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.accounts import close_account
from activities.db import in_transaction
from activities.direct import DirectPool
from activities.ledger import engine, holds
from activities.ledger.chart import CASH
from activities.ledger.verify import verify_ledger
from activities.tables import Journal, Posting
from schemas.errors import BankflowError, ErrorCode
from schemas.ledger import (
    HoldRequest,
    JournalRequest,
    JournalResult,
    PostHoldRequest,
    PostingLine,
    ReversalRequest,
    VoidHoldRequest,
)
from tests.conftest import CURRENCY, Factory, Sessions

TODAY = date(2026, 11, 23)


def jid() -> str:
    return f"j-{uuid.uuid4().hex}"


def journal(
    journal_id: str, *lines: tuple[int, int, int], currency: str = CURRENCY
) -> JournalRequest:
    return JournalRequest(
        journal_id=journal_id,
        kind="transfer",
        value_date=TODAY,
        postings=[
            PostingLine(debit_account_id=d, credit_account_id=c, amount_minor=a, currency=currency)
            for d, c, a in lines
        ],
    )


Post = Callable[[JournalRequest], Awaitable[JournalResult]]


@pytest.fixture(params=["in_transaction", "alone"])
def post(request: pytest.FixtureRequest, sessions: Sessions, direct: DirectPool) -> Post:
    """Every journal test twice: inside a transaction (a session, as a disbursement posts), and
    alone, as its own statement on a DirectPool (as the post_journal activity and a deposit do)."""
    if request.param == "alone":
        return lambda req: engine.post_journal(direct, req)
    return lambda req: in_transaction(sessions, lambda s: engine.post_journal(s, req))


async def balance(factory: Factory, account_id: int) -> int:
    acc = await factory.account(account_id)
    return acc.credits_posted_minor - acc.debits_posted_minor


async def journal_exists(sessions: async_sessionmaker[AsyncSession], journal_id: str) -> bool:
    async with sessions() as s:
        return await s.get(Journal, journal_id) is not None


async def test_transfer_moves_money_and_repeat_posts_once(
    sessions: Sessions, factory: Factory, post: Post
) -> None:
    a = await factory.savings_account(100_00)
    b = await factory.savings_account()
    req = journal(jid(), (a.id, b.id, 30_00))
    first = await post(req)
    again = await post(req)
    assert first.created and not again.created
    assert again.postings == first.postings
    assert await balance(factory, a.id) == 70_00
    assert await balance(factory, b.id) == 30_00


async def test_same_id_other_content_is_conflict(
    sessions: Sessions, factory: Factory, post: Post
) -> None:
    a = await factory.savings_account(100_00)
    b = await factory.savings_account()
    journal_id = jid()
    await post(journal(journal_id, (a.id, b.id, 30_00)))
    with pytest.raises(BankflowError) as err:
        await post(journal(journal_id, (a.id, b.id, 31_00)))
    assert err.value.code == ErrorCode.JOURNAL_CONFLICT
    assert await balance(factory, b.id) == 30_00


async def test_racing_retries_of_one_journal_post_once(
    sessions: Sessions, factory: Factory, post: Post
) -> None:
    a = await factory.savings_account(100_00)
    b = await factory.savings_account()
    req = journal(jid(), (a.id, b.id, 10_00))
    results = await asyncio.gather(*(post(req) for _ in range(10)))
    assert sum(r.created for r in results) == 1
    assert await balance(factory, b.id) == 10_00


async def test_overdraft_refused_and_multi_posting_journal_is_atomic(
    sessions: Sessions, factory: Factory, post: Post
) -> None:
    a = await factory.savings_account(50_00)
    b = await factory.savings_account()
    c = await factory.savings_account()
    req = journal(jid(), (a.id, b.id, 40_00), (a.id, c.id, 20_00))
    with pytest.raises(BankflowError) as err:
        await post(req)
    assert err.value.code == ErrorCode.INSUFFICIENT_FUNDS
    assert not await journal_exists(sessions, req.journal_id)
    assert [await balance(factory, x.id) for x in (a, b, c)] == [50_00, 0, 0]


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda a, b, cash: ((a, 999_999_999, 1_00),), ErrorCode.ACCOUNT_NOT_FOUND),
        (lambda a, b, cash: ((a, a, 1_00),), ErrorCode.INVALID_POSTING),
    ],
)
async def test_bad_postings_change_nothing(
    sessions: Sessions,
    factory: Factory,
    mutate: Callable[[int, int, int], tuple[tuple[int, int, int], ...]],
    code: ErrorCode,
    post: Post,
) -> None:
    a = await factory.savings_account(10_00)
    b = await factory.savings_account()
    req = journal(jid(), *mutate(a.id, b.id, factory.gl(CASH.number)))
    with pytest.raises(BankflowError) as err:
        await post(req)
    assert err.value.code == code
    assert not await journal_exists(sessions, req.journal_id)
    assert await balance(factory, a.id) == 10_00


async def test_wrong_currency_refused(sessions: Sessions, factory: Factory, post: Post) -> None:
    a = await factory.savings_account(10_00)
    b = await factory.savings_account()
    req = journal(jid(), (a.id, b.id, 1_00), currency="EUR")
    with pytest.raises(BankflowError) as err:
        await post(req)
    assert err.value.code == ErrorCode.CURRENCY_MISMATCH
    assert await balance(factory, a.id) == 10_00


async def test_closed_account_refuses_postings_and_close_needs_zero(
    sessions: Sessions, factory: Factory, post: Post
) -> None:
    a = await factory.savings_account(10_00)
    b = await factory.savings_account()
    with pytest.raises(BankflowError) as err:
        await in_transaction(sessions, lambda s: close_account(s, a.code))
    assert err.value.code == ErrorCode.ACCOUNT_NOT_EMPTY
    closed = await in_transaction(sessions, lambda s: close_account(s, b.code))
    assert closed.status == "closed"
    with pytest.raises(BankflowError) as err:
        await post(journal(jid(), (a.id, b.id, 1_00)))
    assert err.value.code == ErrorCode.ACCOUNT_CLOSED


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE postings SET amount_minor = amount_minor + 1 WHERE journal_id = :j",
        "DELETE FROM postings WHERE journal_id = :j",
        "UPDATE journals SET kind = 'x' WHERE id = :j",
        "DELETE FROM journals WHERE id = :j",
        "TRUNCATE postings",
    ],
)
async def test_database_refuses_to_change_history(
    sessions: Sessions, owner_sessions: Sessions, factory: Factory, sql: str, post: Post
) -> None:
    """The triggers hold even for the owning role (the runtime role is refused sooner, by its
    privileges: tests/ledger/test_db_privileges.py)."""
    a = await factory.savings_account(10_00)
    b = await factory.savings_account()
    req = journal(jid(), (a.id, b.id, 1_00))
    await post(req)
    with pytest.raises(DBAPIError, match="append-only"):
        async with owner_sessions() as s, s.begin():
            await s.execute(text(sql), {"j": req.journal_id} if ":j" in sql else {})
    async with sessions() as s:
        amount = await s.scalar(
            select(Posting.amount_minor).where(Posting.journal_id == req.journal_id)
        )
    assert amount == 1_00


def hold(hold_id: str, debit: int, credit: int, amount: int) -> HoldRequest:
    return HoldRequest(
        hold_id=hold_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount_minor=amount,
        currency=CURRENCY,
    )


async def test_hold_reserves_funds_until_posted(
    sessions: Sessions, factory: Factory, post: Post
) -> None:
    a = await factory.savings_account(100_00)
    b = await factory.savings_account()
    h = hold(f"h-{uuid.uuid4().hex}", a.id, b.id, 80_00)
    await in_transaction(sessions, lambda s: holds.place_hold(s, h))
    with pytest.raises(BankflowError) as err:  # 20.00 available, not 30.00
        await post(journal(jid(), (a.id, b.id, 30_00)))
    assert err.value.code == ErrorCode.INSUFFICIENT_FUNDS
    again = await in_transaction(sessions, lambda s: holds.place_hold(s, h))
    assert again.status == "pending"
    acc = await factory.account(a.id)
    assert acc.debits_pending_minor == 80_00  # the repeated placement reserved nothing more
    with pytest.raises(BankflowError) as err:
        other = h.model_copy(update={"amount_minor": 1_00})
        await in_transaction(sessions, lambda s: holds.place_hold(s, other))
    assert err.value.code == ErrorCode.HOLD_CONFLICT


async def test_hold_over_available_is_refused(sessions: Sessions, factory: Factory) -> None:
    a = await factory.savings_account(10_00)
    b = await factory.savings_account()
    h = hold(f"h-{uuid.uuid4().hex}", a.id, b.id, 10_01)
    with pytest.raises(BankflowError) as err:
        await in_transaction(sessions, lambda s: holds.place_hold(s, h))
    assert err.value.code == ErrorCode.INSUFFICIENT_FUNDS
    assert (await factory.account(a.id)).debits_pending_minor == 0


async def test_hold_posts_or_voids_exactly_once_under_race(
    sessions: Sessions, factory: Factory
) -> None:
    a = await factory.savings_account(100_00)
    b = await factory.savings_account()
    h = hold(f"h-{uuid.uuid4().hex}", a.id, b.id, 60_00)
    await in_transaction(sessions, lambda s: holds.place_hold(s, h))

    async def attempt(i: int) -> str:
        try:
            if i % 2:
                req = PostHoldRequest(
                    hold_id=h.hold_id,
                    journal_id=f"{h.hold_id}:post:{i}",
                    kind="withdrawal",
                    value_date=TODAY,
                )
                await in_transaction(sessions, lambda s: holds.post_hold(s, req))
                return "posted"
            void = VoidHoldRequest(hold_id=h.hold_id, reason="race")
            await in_transaction(sessions, lambda s: holds.void_hold(s, void))
            return "voided"
        except BankflowError as exc:
            assert exc.code == ErrorCode.HOLD_ALREADY_RESOLVED
            return "refused"

    outcomes = await asyncio.gather(*(attempt(i) for i in range(20)))
    winners = {o for o in outcomes if o != "refused"}
    assert len(winners) == 1
    acc_a, acc_b = await factory.account(a.id), await factory.account(b.id)
    assert acc_a.debits_pending_minor == 0 and acc_b.credits_pending_minor == 0
    if winners == {"posted"}:
        assert outcomes.count("posted") == 1
        assert await balance(factory, b.id) == 60_00
    else:
        assert await balance(factory, b.id) == 0


async def test_post_hold_is_idempotent_for_the_same_journal(
    sessions: Sessions, factory: Factory
) -> None:
    a = await factory.savings_account(100_00)
    b = await factory.savings_account()
    h = hold(f"h-{uuid.uuid4().hex}", a.id, b.id, 60_00)
    await in_transaction(sessions, lambda s: holds.place_hold(s, h))
    req = PostHoldRequest(
        hold_id=h.hold_id, journal_id=f"{h.hold_id}:post", kind="withdrawal", value_date=TODAY
    )
    first = await in_transaction(sessions, lambda s: holds.post_hold(s, req))
    second = await in_transaction(sessions, lambda s: holds.post_hold(s, req))
    assert first.created and not second.created
    assert await balance(factory, b.id) == 60_00
    with pytest.raises(BankflowError) as err:
        void = VoidHoldRequest(hold_id=h.hold_id, reason="too late")
        await in_transaction(sessions, lambda s: holds.void_hold(s, void))
    assert err.value.code == ErrorCode.HOLD_ALREADY_RESOLVED


async def test_reversal_mirrors_once_even_under_race(
    sessions: Sessions, factory: Factory, post: Post
) -> None:
    a = await factory.savings_account(100_00)
    b = await factory.savings_account()
    original = await post(journal(jid(), (a.id, b.id, 25_00)))

    async def reverse(i: int) -> str:
        req = ReversalRequest(
            original_journal_id=original.journal_id,
            journal_id=f"rev-{original.journal_id}-{i}",
            value_date=TODAY,
        )
        try:
            await in_transaction(sessions, lambda s: engine.reverse_journal(s, req))
            return "reversed"
        except BankflowError as exc:
            assert exc.code == ErrorCode.ALREADY_REVERSED
            return "refused"

    outcomes = await asyncio.gather(*(reverse(i) for i in range(8)))
    assert outcomes.count("reversed") == 1
    assert await balance(factory, a.id) == 100_00 and await balance(factory, b.id) == 0
    async with sessions() as s:
        reversal_id = await s.scalar(
            select(Journal.id).where(Journal.reverses_journal_id == original.journal_id)
        )
    assert reversal_id is not None
    with pytest.raises(BankflowError) as err:
        req = ReversalRequest(original_journal_id=reversal_id, journal_id=jid(), value_date=TODAY)
        await in_transaction(sessions, lambda s: engine.reverse_journal(s, req))
    assert err.value.code == ErrorCode.NOT_REVERSIBLE


async def test_reversal_that_would_overdraw_is_refused(
    sessions: Sessions, factory: Factory, post: Post
) -> None:
    a = await factory.savings_account(100_00)
    b = await factory.savings_account()
    c = await factory.savings_account()
    original = await post(journal(jid(), (a.id, b.id, 25_00)))
    await post(journal(jid(), (b.id, c.id, 25_00)))  # b spent what it received
    req = ReversalRequest(
        original_journal_id=original.journal_id, journal_id=jid(), value_date=TODAY
    )
    with pytest.raises(BankflowError) as err:
        await in_transaction(sessions, lambda s: engine.reverse_journal(s, req))
    assert err.value.code == ErrorCode.INSUFFICIENT_FUNDS


async def test_fifty_concurrent_debits_never_overdraw(
    sessions: Sessions, factory: Factory, post: Post
) -> None:
    a = await factory.savings_account(1_000_00)
    cash = factory.gl(CASH.number)

    async def withdraw() -> bool:
        try:
            await post(journal(jid(), (a.id, cash, 100_00)))
            return True
        except BankflowError as exc:
            assert exc.code == ErrorCode.INSUFFICIENT_FUNDS
            return False

    results = await asyncio.gather(*(withdraw() for _ in range(50)))
    assert sum(results) == 10
    assert await balance(factory, a.id) == 0


async def test_verify_passes_on_the_shared_ledger(sessions: Sessions, factory: Factory) -> None:
    await factory.savings_account(5_00)
    async with sessions() as s:
        report = await verify_ledger(s)
        count = await s.scalar(select(func.count()).select_from(Journal))
    assert count and count > 0
    assert report.ok, [c for c in report.checks if not c.ok]
