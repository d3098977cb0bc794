"""The engine's one statement refuses exactly what `check_deltas` refuses, with the same error,
and writes exactly the deltas when it accepts (activities/ledger/checks.py keeps the two side by
side); and a refused journal answers in the order the checks had when the journal row came
first: a replay, an original reversed already, a closed month, then the accounts.

The property runs the real statement on temporary tables that shadow ledger_accounts, journals
and postings on one connection (Postgres looks in pg_temp first), so accounts can hold any state
the table's constraints allow (closed, overdraft flags either way, pending amounts) without
touching the shared test ledger that other tests verify.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from activities.db import in_transaction
from activities.direct import DirectPool
from activities.ledger import engine
from activities.ledger.chart import CASH
from activities.ledger.checks import Deltas, check_deltas
from activities.ledger.periods import close_period
from schemas.errors import BankflowError, ErrorCode
from schemas.ledger import JournalRequest, PostingLine
from schemas.settings import Settings
from tests.conftest import CURRENCY, Factory, Sessions

FAR = date(2099, 6, 1)  # a value date no test closes
SHADOWS = ("ledger_accounts", "journals", "postings")
COLUMNS = (
    "id, code, name, kind, gl_type, currency, status, debits_must_not_exceed_credits, "
    "credits_must_not_exceed_debits, debits_posted_minor, credits_posted_minor, "
    "debits_pending_minor, credits_pending_minor"
)


@pytest.fixture(scope="module")
async def shadowed(settings: Settings) -> AsyncIterator[DirectPool]:
    """A pool of one connection (so every statement meets the same temporary tables)."""
    async with DirectPool(settings.migration_sqlalchemy_url, size=1) as pool:
        for table in SHADOWS:
            # Constraints and defaults, not the foreign keys or triggers: the balance checks
            # (no_overdraft, no_overcredit, balances_nonnegative) still hold.
            await pool.execute(
                text(f"CREATE TEMP TABLE {table} (LIKE public.{table} INCLUDING ALL)"), {}
            )
        yield pool


Account = dict[str, Any]


@st.composite
def account(draw: st.DrawFn, account_id: int) -> Account:
    debits_cap = draw(st.booleans())
    credits_cap = draw(st.booleans()) and not debits_cap
    small = st.integers(0, 20)  # small numbers: a journal often lands exactly on a limit
    dp, cp, dpe, cpe = draw(small), draw(small), draw(small), draw(small)
    if debits_cap:  # the table's own no_overdraft: a valid starting state
        cp = max(cp, dp + dpe)
    if credits_cap:
        dp = max(dp, cp + cpe)
    return {
        "id": account_id,
        "code": f"T{account_id}",
        "status": draw(st.sampled_from(["open"] * 5 + ["closed"])),
        "currency": draw(st.sampled_from(["USD"] * 5 + ["EUR"])),
        "dmnec": debits_cap,
        "cmned": credits_cap,
        "dp": dp,
        "cp": cp,
        "dpe": dpe,
        "cpe": cpe,
    }


def _room(a: Account, debit: bool) -> int:
    """What the account takes before its own cap binds: a journal of exactly that much sits on
    the limit, where an off-by-one would show."""
    if debit:
        return max(1, int(a["cp"]) - int(a["dp"]) - int(a["dpe"]))
    return max(1, int(a["dp"]) - int(a["cp"]) - int(a["cpe"]))


@st.composite
def case(draw: st.DrawFn) -> tuple[list[Account], list[tuple[int, int, int, str, bool]], bool]:
    """Accounts 1..n, and lines (debit, credit, amount, currency, pending?) among them and,
    now and then, an id that has no account; `check_open` as a journal (True) or a hold
    resolving (False)."""
    n = draw(st.integers(2, 4))
    accounts = [draw(account(i)) for i in range(1, n + 1)]
    top = n + (1 if draw(st.integers(0, 9)) == 0 else 0)
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        debit = draw(st.integers(1, top))
        credit = draw(st.sampled_from([i for i in range(1, top + 1) if i != debit]))
        exact = [
            _room(accounts[i - 1], side) for i, side in ((debit, True), (credit, False)) if i <= n
        ]
        amount = draw(st.one_of(st.integers(1, 30), st.sampled_from(exact or [1])))
        currency = draw(st.sampled_from(["USD"] * 5 + ["EUR"]))
        lines.append((debit, credit, amount, currency, draw(st.booleans())))
    return accounts, lines, draw(st.booleans())


async def _reset(pool: DirectPool, accounts: list[Account]) -> None:
    for table in reversed(SHADOWS):
        await pool.execute(text(f"DELETE FROM pg_temp.{table}"), {})
    for a in accounts:
        await pool.execute(
            text(
                f"INSERT INTO pg_temp.ledger_accounts ({COLUMNS}) VALUES (:id, :code, 'test', "
                "'gl', 'liability', :currency, :status, :dmnec, :cmned, :dp, :cp, :dpe, :cpe)"
            ),
            a,
        )


async def _rows(pool: DirectPool) -> list[tuple[Any, ...]]:
    return await pool.rows(
        text(
            "SELECT id, code, status, currency, debits_must_not_exceed_credits, "
            "credits_must_not_exceed_debits, debits_posted_minor, credits_posted_minor, "
            "debits_pending_minor, credits_pending_minor FROM pg_temp.ledger_accounts ORDER BY id"
        ),
        {},
    )


def _acc(account_id: int, **state: Any) -> Account:
    base: Account = {
        "id": account_id,
        "code": f"T{account_id}",
        "status": "open",
        "currency": "USD",
    }
    return base | {"dmnec": False, "cmned": False, "dp": 0, "cp": 0, "dpe": 0, "cpe": 0} | state


# The edges random cases meet only now and then: exactly on each cap, and an account missing.
EDGES = [
    ([_acc(1, dmnec=True, cp=10), _acc(2)], [(1, 2, 10, "USD", False)], True),
    ([_acc(1, dmnec=True, cp=10, dpe=4), _acc(2)], [(1, 2, 6, "USD", True)], True),
    ([_acc(1, cmned=True, dp=10), _acc(2)], [(2, 1, 10, "USD", False)], True),
    ([_acc(1, cmned=True, dp=10, cpe=3), _acc(2)], [(2, 1, 7, "USD", True)], True),
    ([_acc(1, cp=10), _acc(2)], [(1, 3, 5, "USD", False)], True),
    ([_acc(1, dmnec=True, cp=10), _acc(2, status="closed")], [(1, 2, 10, "USD", True)], False),
    # One line, nothing pending: the engine's scalar statement (POST_ONE) decides these.
    ([_acc(1, cp=10), _acc(2, currency="EUR")], [(1, 2, 5, "USD", False)], True),
    ([_acc(1, cp=10), _acc(2, status="closed")], [(1, 2, 5, "USD", False)], True),
    ([_acc(1, dmnec=True, cp=10), _acc(2, status="closed")], [(1, 2, 11, "USD", False)], False),
    ([_acc(1, dmnec=True, cp=9), _acc(2)], [(2, 1, 3, "USD", False)], True),
]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=case())
@example(drawn=EDGES[0])
@example(drawn=EDGES[1])
@example(drawn=EDGES[2])
@example(drawn=EDGES[3])
@example(drawn=EDGES[4])
@example(drawn=EDGES[5])
@example(drawn=EDGES[6])
@example(drawn=EDGES[7])
@example(drawn=EDGES[8])
@example(drawn=EDGES[9])
async def test_the_statement_refuses_what_check_deltas_refuses(
    shadowed: DirectPool,
    drawn: tuple[list[Account], list[tuple[int, int, int, str, bool]], bool],
) -> None:
    accounts, lines, check_open = drawn
    await _reset(shadowed, accounts)
    before = await _rows(shadowed)
    deltas = Deltas()
    for debit, credit, amount, currency, pending in lines:
        (deltas.pend if pending else deltas.post)(debit, credit, amount, currency)
    req = JournalRequest(
        journal_id=f"p-{uuid.uuid4().hex}",
        kind="transfer",
        value_date=FAR,
        postings=[
            PostingLine(debit_account_id=d, credit_account_id=c, amount_minor=a, currency=cur)
            for d, c, a, cur, _ in lines
        ],
    )
    try:
        check_deltas(before, deltas, check_open=check_open)
        expected: ErrorCode | None = None
    except BankflowError as exc:
        expected = exc.code
    try:
        written = await engine.write_journal(shadowed, req, deltas, check_open=check_open)
        got: ErrorCode | None = None
    except BankflowError as exc:
        got = exc.code
    assert got == expected
    after = {row[0]: row for row in await _rows(shadowed)}
    journals = await shadowed.rows(text("SELECT count(*) FROM pg_temp.journals"), {})
    postings = await shadowed.rows(text("SELECT count(*) FROM pg_temp.postings"), {})
    if expected is not None:
        assert after == {row[0]: row for row in before}
        assert journals == [(0,)] and postings == [(0,)]
        return
    assert written is not None and journals == [(1,)] and postings == [(len(lines),)]
    for row in before:
        delta = deltas.by_account[row[0]]
        assert after[row[0]][6:] == (
            row[6] + delta.debits_posted,
            row[7] + delta.credits_posted,
            row[8] + delta.debits_pending,
            row[9] + delta.credits_pending,
        )


Poster = Callable[[JournalRequest], Awaitable[Any]]


@pytest.fixture(params=["in_transaction", "alone"])
def poster(request: pytest.FixtureRequest, sessions: Sessions, direct: DirectPool) -> Poster:
    if request.param == "alone":
        return lambda req: engine.post_journal(direct, req)
    return lambda req: in_transaction(sessions, lambda s: engine.post_journal(s, req))


def one(journal_id: str, debit: int, credit: int, amount: int, day: date) -> JournalRequest:
    return JournalRequest(
        journal_id=journal_id,
        kind="transfer",
        value_date=day,
        postings=[
            PostingLine(
                debit_account_id=debit,
                credit_account_id=credit,
                amount_minor=amount,
                currency=CURRENCY,
            )
        ],
    )


async def test_a_replay_is_answered_even_when_the_journal_would_not_fit_now(
    factory: Factory, poster: Poster
) -> None:
    a = await factory.savings_account(30_00)
    b = await factory.savings_account()
    req = one(f"j-{uuid.uuid4().hex}", a.id, b.id, 30_00, FAR)
    first = await poster(req)
    again = await poster(req)  # a has nothing left: the checks alone would refuse it
    assert first.created and not again.created and again.postings == first.postings
    with pytest.raises(BankflowError) as err:
        await poster(one(req.journal_id, a.id, b.id, 31_00, FAR))
    assert err.value.code == ErrorCode.JOURNAL_CONFLICT


async def test_a_closed_month_is_named_before_the_accounts(
    sessions: Sessions, factory: Factory, poster: Poster
) -> None:
    a = await factory.savings_account()  # empty: the accounts would refuse too
    b = await factory.savings_account()
    await in_transaction(
        sessions, lambda s: close_period(s, date(1986, 2, 1), user_id=None, username="t")
    )
    with pytest.raises(BankflowError) as err:
        await poster(one(f"j-{uuid.uuid4().hex}", a.id, b.id, 1_00, date(1986, 2, 14)))
    assert err.value.code == ErrorCode.PERIOD_CLOSED


async def test_a_reversal_of_a_reversed_journal_is_named_before_the_accounts(
    sessions: Sessions, direct: DirectPool, factory: Factory
) -> None:
    """A second reversal that got past reverse_journal's own look (a race) meets the journal
    reversed already; it would also overdraw b, which spent what it got back, but what the
    caller must hear is that the original is reversed already."""
    a = await factory.savings_account(40_00)
    b = await factory.savings_account()
    cash = factory.gl(CASH.number)
    original = await engine.post_journal(
        direct, one(f"j-{uuid.uuid4().hex}", a.id, b.id, 40_00, FAR)
    )
    mirror = one(f"rev-{original.journal_id}", b.id, a.id, 40_00, FAR)
    await engine.post_journal(direct, mirror, reverses=original.journal_id)
    await engine.post_journal(direct, one(f"j-{uuid.uuid4().hex}", cash, b.id, 5_00, FAR))
    again = mirror.model_copy(update={"journal_id": f"rev2-{original.journal_id}"})
    with pytest.raises(BankflowError) as alone:
        await engine.post_journal(direct, again, reverses=original.journal_id)
    with pytest.raises(BankflowError) as in_session:
        await in_transaction(
            sessions, lambda s: engine.post_journal(s, again, reverses=original.journal_id)
        )
    assert alone.value.code == in_session.value.code == ErrorCode.ALREADY_REVERSED
