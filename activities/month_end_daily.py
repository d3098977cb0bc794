"""Month-end for daily-compounding products: each day compounds on the last (a loop per day,
not a set operation), so `domain.interest` prices these accounts and the rows go into the
batch's priced table beside those Postgres priced (`activities.interest_sql`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from activities.interest_sql import CARRY, PENDING, PRICED
from activities.savings import terms_of
from activities.tables import Currency, SavingsProduct
from domain.interest import Carry, MonthInterest, Terms, month_interest
from domain.periods import period_bounds, previous_period, year_month
from schemas.month_end import BatchRequest

# Daily compounding, priced by domain.interest: the accounts (already locked) and their carry.
DAILY_ACCOUNTS = text(
    f"""
    SELECT s.account_id, s.product_id, s.opened_on, a.closed_at::date AS closed_on,
           a.status, a.currency, a.credits_posted_minor - a.debits_posted_minor AS balance,
           c.accrued, c.residue
    FROM savings_accounts s
    JOIN ledger_accounts a ON a.id = s.account_id
    {CARRY}
    WHERE s.opened_on <= :end
      AND (a.closed_at IS NULL OR a.closed_at::date >= :start)
      AND s.product_id = ANY(:products)
      {PENDING}
    ORDER BY s.account_id
    """
)
DAILY_CHANGES = text(
    """
    SELECT x.account_id, j.value_date, sum(x.amount) AS amount
    FROM (SELECT credit_account_id AS account_id, journal_id, amount_minor AS amount
          FROM postings WHERE credit_account_id = ANY(:ids)
          UNION ALL
          SELECT debit_account_id, journal_id, -amount_minor
          FROM postings WHERE debit_account_id = ANY(:ids)) x
    JOIN journals j ON j.id = x.journal_id
    WHERE j.value_date >= :start
    GROUP BY x.account_id, j.value_date
    """
)
INSERT_PRICED = text(
    f"""
    INSERT INTO {PRICED} (account_id, currency, earned, posted_minor, tax_minor, accrued, residue)
    SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:currencies AS text[]),
                         CAST(CAST(:earned AS text[]) AS numeric[]), CAST(:posted AS bigint[]),
                         CAST(:tax AS bigint[]), CAST(CAST(:accrued AS text[]) AS numeric[]),
                         CAST(CAST(:residue AS text[]) AS numeric[]))
    """
)


@dataclass(frozen=True)
class _Account:
    account_id: int
    product_id: int
    opened_on: date
    closed_on: date | None
    is_open: bool
    currency: str
    balance_minor: int
    carry: Carry


@dataclass(frozen=True)
class _Priced:
    account: _Account
    interest: MonthInterest
    posted_minor: int
    tax_minor: int


async def _products(session: AsyncSession) -> dict[int, tuple[Terms, str]]:
    rows = await session.execute(
        select(SavingsProduct, Currency.scale).join(
            Currency, Currency.code == SavingsProduct.currency
        )
    )
    return {p.id: (terms_of(p, scale), p.currency) for p, scale in rows}


def _price(
    period: str,
    start: date,
    end: date,
    accounts: list[_Account],
    changes: dict[int, list[tuple[date, int]]],
    products: dict[int, tuple[Terms, str]],
) -> list[_Priced]:
    """Pure: each account's month by domain.interest. Runs in a thread so the event loop keeps
    heartbeating meanwhile."""
    year, month = year_month(period)
    priced: list[_Priced] = []
    for acc in accounts:
        terms = products[acc.product_id][0]
        unit = Decimal(1).scaleb(-terms.scale)
        own = changes.get(acc.account_id, [])
        after_end = sum(amount for day, amount in own if day > end)
        closing = (acc.balance_minor - after_end) * unit
        result = month_interest(
            terms,
            year,
            month,
            closing,
            [(day, amount * unit) for day, amount in own if day <= end],
            opened_on=acc.opened_on,
            closed_on=acc.closed_on,
            carry=acc.carry,
        )
        if not acc.is_open:
            # A closed account cannot be credited: what it earned is recorded, not posted.
            result = MonthInterest(
                result.earned, False, Decimal(0), Decimal(0), result.days, Carry()
            )
        posted = int(result.posted.scaleb(terms.scale))
        tax = int(result.tax.scaleb(terms.scale))
        priced.append(_Priced(acc, result, posted, tax))
    return priced


async def price_daily_compounding(
    session: AsyncSession, req: BatchRequest, params: dict[str, object]
) -> None:
    """Daily-compounding accounts of the batch, priced by domain.interest into the batch's
    priced table (each day compounds on the last: a loop per day, not a set operation)."""
    products = await _products(session)
    daily = [pid for pid, (terms, _) in products.items() if terms.compounding == "daily"]
    if not daily:
        return
    rows = (
        await session.execute(
            DAILY_ACCOUNTS, {**params, "products": daily, "prev": previous_period(req.period)}
        )
    ).all()
    if not rows:
        return
    accounts = [
        _Account(
            account_id=r.account_id,
            product_id=r.product_id,
            opened_on=r.opened_on,
            closed_on=r.closed_on,
            is_open=r.status == "open",
            currency=r.currency,
            balance_minor=int(r.balance),
            carry=Carry(Decimal(r.accrued), Decimal(r.residue))
            if r.accrued is not None
            else Carry(),
        )
        for r in rows
    ]
    start, end = period_bounds(req.period)
    changes: dict[int, list[tuple[date, int]]] = {}
    for r in await session.execute(
        DAILY_CHANGES, {"ids": [a.account_id for a in accounts], "start": start}
    ):
        changes.setdefault(r.account_id, []).append((r.value_date, int(r.amount)))
    priced = await asyncio.to_thread(_price, req.period, start, end, accounts, changes, products)
    await session.execute(
        INSERT_PRICED,
        {
            "ids": [p.account.account_id for p in priced],
            "currencies": [p.account.currency for p in priced],
            # Decimals as text: psycopg's numeric array dumper costs more than the INSERT.
            "earned": [str(p.interest.earned) for p in priced],
            "posted": [p.posted_minor for p in priced],
            "tax": [p.tax_minor for p in priced],
            "accrued": [str(p.interest.carry.accrued) for p in priced],
            "residue": [str(p.interest.carry.residue) for p in priced],
        },
    )
