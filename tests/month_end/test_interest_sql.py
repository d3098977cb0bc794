"""Month-end priced in Postgres equals `domain.interest`: hypothesis draws products (rates to 9
places, tiers, both methods, both compoundings, every posting period, 360/365 days, minimum
balances, tax, every rounding mode, 2- and 0-decimal currencies) and accounts (opened or closed
in the month, back-dated and later-dated movements, negative end-of-day balances, carried
interest and residue), runs the real batch on a real database, and compares every account's
interest record with what `domain.interest.month_interest` computes from the same facts."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.accounts import create_member, open_account
from activities.db import in_transaction, make_engine, make_sessionmaker
from activities.ledger import engine as ledger_engine
from activities.ledger.chart import CASH, ensure_branch, ensure_chart
from activities.month_end_batch import post_interest_batch
from activities.savings import create_product, enroll_account
from domain.interest import Carry, MonthInterest, Terms, Tier, month_interest
from domain.periods import period_bounds, previous_period, year_month
from schemas.ledger import JournalRequest, PostingLine
from schemas.members import AccountOpen, MemberCreate
from schemas.month_end import BatchRequest
from schemas.savings import ProductCreate, TierIn
from schemas.settings import Settings
from tests.month_end.conftest import fresh_database

SCALES = {"USD": 2, "JPY": 0}
PERIODS = ("2025-12", "2026-02", "2026-06", "2026-10")
MODES = ("ROUND_HALF_EVEN", "ROUND_HALF_UP", "ROUND_DOWN", "ROUND_UP")


@dataclass(frozen=True)
class Product:
    currency: str
    annual_rate: Decimal
    tiers: tuple[tuple[int, Decimal], ...]  # (min balance minor, rate)
    calculation: str
    compounding: str
    posting: str
    days_in_year: int
    min_balance_minor: int
    tax_rate: Decimal
    rounding: str

    def terms(self) -> Terms:
        unit = Decimal(1).scaleb(-SCALES[self.currency])
        return Terms(
            annual_rate=self.annual_rate,
            method=self.calculation,  # type: ignore[arg-type]
            compounding=self.compounding,  # type: ignore[arg-type]
            posting=self.posting,  # type: ignore[arg-type]
            days_in_year=self.days_in_year,
            min_balance=self.min_balance_minor * unit,
            withholding_tax_rate=self.tax_rate,
            rounding=self.rounding,
            scale=SCALES[self.currency],
            tiers=tuple(Tier(m * unit, r) for m, r in self.tiers),
        )


@dataclass(frozen=True)
class Account:
    opened_on: date
    closed_on: date | None
    moves: tuple[tuple[date, int], ...]  # (value date, minor units; negative withdraws)
    carry: Carry | None


@dataclass(frozen=True)
class Case:
    period: str
    product: Product
    accounts: tuple[Account, ...]


def rates(top: int) -> st.SearchStrategy[Decimal]:
    return st.integers(0, top).map(lambda n: Decimal(n).scaleb(-9))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    period = draw(st.sampled_from(PERIODS))
    start, end = period_bounds(period)
    currency = draw(st.sampled_from(sorted(SCALES)))
    mins = draw(st.lists(st.integers(0, 2_000_000), max_size=3, unique=True))
    product = Product(
        currency=currency,
        annual_rate=draw(rates(300_000_000)),
        tiers=tuple(sorted((m, draw(rates(300_000_000))) for m in mins)),
        calculation=draw(st.sampled_from(("daily_balance", "average_daily_balance"))),
        compounding=draw(st.sampled_from(("monthly", "monthly", "monthly", "daily"))),
        posting=draw(st.sampled_from(("monthly", "quarterly", "annually"))),
        days_in_year=draw(st.sampled_from((360, 365))),
        min_balance_minor=draw(st.sampled_from((0, 0, 1000, 500_000))),
        tax_rate=draw(rates(400_000_000)),
        rounding=draw(st.sampled_from(MODES)),
    )
    days = st.integers(-40, (end - start).days + 40).map(lambda n: start + timedelta(days=n))
    accounts = []
    for _ in range(draw(st.integers(1, 4))):
        opened_on = min(draw(days), end)
        closed = draw(st.booleans()) and draw(st.integers(0, 4)) == 0
        closed_on = max(min(draw(days), end), start, opened_on) if closed else None
        moves = draw(
            st.lists(
                st.tuples(days, st.integers(-3_000_000, 9_000_000).filter(bool)),
                min_size=1,
                max_size=4,
            )
        )
        carry = None
        if draw(st.booleans()):
            carry = Carry(
                draw(rates(5_000_000_000)),
                Decimal(draw(st.integers(-5_000_000, 5_000_000))).scaleb(-9)
                * (100 if currency == "JPY" else 1),
            )
        accounts.append(Account(opened_on, closed_on, tuple(moves), carry))
    return Case(period, product, tuple(accounts))


def expected(case: Case, account: Account, moves: list[tuple[date, int]]) -> MonthInterest:
    """What domain.interest says of one account (the batch's closed-account rule included)."""
    terms = case.product.terms()
    unit = Decimal(1).scaleb(-terms.scale)
    start, end = period_bounds(case.period)
    year, month = year_month(case.period)
    closing = sum((amount for day, amount in moves if day <= end), 0) * unit
    result = month_interest(
        terms,
        year,
        month,
        closing,
        [(day, amount * unit) for day, amount in moves if start <= day <= end],
        opened_on=account.opened_on,
        closed_on=account.closed_on,
        carry=account.carry or Carry(),
    )
    if account.closed_on is not None:
        return MonthInterest(result.earned, False, Decimal(0), Decimal(0), result.days, Carry())
    return result


async def run_case(url: str, chart: dict[str, dict[str, int]], case: Case) -> None:
    engine = make_engine(Settings(database_url=url), pool_size=2)
    sessions = make_sessionmaker(engine)
    p = case.product
    scale = SCALES[p.currency]
    code = f"H{uuid.uuid4().hex[:8].upper()}"
    body = ProductCreate(
        code=code,
        name=code,
        currency=p.currency,
        annual_rate=p.annual_rate,
        tiers=[
            TierIn(min_balance=str(Decimal(m).scaleb(-scale)), annual_rate=r) for m, r in p.tiers
        ],
        calculation=p.calculation,
        compounding=p.compounding,
        posting=p.posting,
        days_in_year=p.days_in_year,
        min_balance=str(Decimal(p.min_balance_minor).scaleb(-scale)),
        withholding_tax_rate=p.tax_rate,
        rounding=p.rounding,
    )
    try:
        await in_transaction(sessions, lambda s: create_product(s, body))
        ids: list[int] = []
        applied: list[list[tuple[date, int]]] = []
        for account in case.accounts:
            account_id, moves = await _open(sessions, chart, case, code, account)
            ids.append(account_id)
            applied.append(moves)
        req = BatchRequest(
            period=case.period, workflow_id="h", first_account_id=min(ids), last_account_id=max(ids)
        )
        await in_transaction(sessions, lambda s: post_interest_batch(s, req, lambda _: None))
        async with sessions() as s:
            rows = {
                r.account_id: r
                for r in await s.execute(
                    text(
                        "SELECT account_id, earned, posted_minor, tax_minor, accrued, residue "
                        "FROM interest_postings WHERE period = :p AND account_id = ANY(:ids)"
                    ),
                    {"p": case.period, "ids": ids},
                )
            }
        for account_id, account, moves in zip(ids, case.accounts, applied, strict=True):
            want = expected(case, account, moves)
            got = rows[account_id]
            assert (
                got.earned,
                got.posted_minor,
                got.tax_minor,
                got.accrued,
                got.residue,
            ) == (
                want.earned,
                int(want.posted.scaleb(scale)),
                int(want.tax.scaleb(scale)),
                want.carry.accrued,
                want.carry.residue,
            ), (account, want)
    finally:
        await engine.dispose()


async def _open(
    sessions: async_sessionmaker[AsyncSession],
    chart: dict[str, dict[str, int]],
    case: Case,
    code: str,
    account: Account,
) -> tuple[int, list[tuple[date, int]]]:
    """The account, its movements (a withdrawal the balance cannot pay is skipped), its
    closing and its carry from the month before. Returns its id and the movements applied."""
    cur = case.product.currency

    async def open_it(session: AsyncSession) -> int:
        member = await create_member(
            session,
            MemberCreate(
                first_name="Prop", last_name="Erty", date_of_birth=date(1990, 1, 1),
                branch_code="HQ",
            ),
        )  # fmt: skip
        row = await open_account(session, member, AccountOpen(currency=cur))
        await enroll_account(session, code, row.code, account.opened_on)
        return row.id

    account_id = await in_transaction(sessions, open_it)
    cash = chart[cur][CASH.number]
    balance, applied = 0, []
    for day, amount in account.moves:
        if balance + amount < 0:
            continue
        debit, credit = (cash, account_id) if amount > 0 else (account_id, cash)
        req = JournalRequest(
            journal_id=f"h-{uuid.uuid4().hex}",
            kind="deposit" if amount > 0 else "withdrawal",
            value_date=day,
            postings=[
                PostingLine(
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount_minor=abs(amount),
                    currency=cur,
                )
            ],
        )

        async def post(session: AsyncSession, req: JournalRequest = req) -> object:
            return await ledger_engine.post_journal(session, req)

        await in_transaction(sessions, post)
        balance += amount
        applied.append((day, amount))

    async def close_and_carry(session: AsyncSession) -> None:
        if account.closed_on is not None:
            await session.execute(
                text("UPDATE ledger_accounts SET status = 'closed', closed_at = :at WHERE id = :a"),
                {"a": account_id, "at": datetime.combine(account.closed_on, time(12), UTC)},
            )
        if account.carry is not None:
            await session.execute(
                text(
                    "INSERT INTO interest_postings (account_id, period, currency, earned, "
                    "posted_minor, tax_minor, accrued, residue) "
                    "VALUES (:a, :p, :c, 0, 0, 0, :accrued, :residue)"
                ),
                {"a": account_id, "p": previous_period(case.period), "c": cur,
                 "accrued": account.carry.accrued, "residue": account.carry.residue},
            )  # fmt: skip

    await in_transaction(sessions, close_and_carry)
    return account_id, applied


def test_pricing_in_postgres_equals_domain_interest(pg_server: str) -> None:
    _, url = asyncio.run(fresh_database(pg_server))

    async def charts() -> dict[str, dict[str, int]]:
        engine = make_engine(Settings(database_url=url), pool_size=1)
        sessions = make_sessionmaker(engine)

        async def setup(session: AsyncSession) -> dict[str, dict[str, int]]:
            await ensure_branch(session, "HQ", "Head office", "UTC")
            return {cur: await ensure_chart(session, cur) for cur in SCALES}

        try:
            return await in_transaction(sessions, setup)
        finally:
            await engine.dispose()

    chart = asyncio.run(charts())

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=cases())
    def check(case: Case) -> None:
        asyncio.run(run_case(url, chart, case))

    check()
