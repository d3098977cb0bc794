"""Month-end savings interest, a batch of accounts at a time, with set-based SQL.

One batch = one account-id range = one transaction:
1. lock the range's eligible savings accounts (open in the period, not yet in
   `interest_postings` for it) in ascending id order, and read their balances and carry;
2. read the net postings per account and day since the period started (end-of-day balances);
3. price each account with domain.interest (off the event loop);
4. write one journal for the batch, its postings (interest expense -> account, account ->
   withholding tax payable), one `interest_postings` row per account, the member balances in
   one UPDATE, and the GL side aggregated: one UPDATE per GL account, last, so the interest
   expense row is held for milliseconds, not for the batch.

Exactly once per (account, period): the `interest_postings` primary key, written in the same
transaction as the journal; a retried or re-run batch finds its accounts there and posts
nothing. An advisory lock per (period, range) makes two attempts of one batch queue instead of
racing. The journal, its postings and the GL side are written by `activities.ledger.batch`, the
ledger's own batch-posting primitives, so `ledger verify` recomputes the same content hash.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from activities.ledger import batch
from activities.ledger.batch import Line
from activities.ledger.chart import INTEREST_EXPENSE, WITHHOLDING_TAX, gl_code
from activities.savings import terms_of
from activities.tables import Currency, LedgerAccount, SavingsProduct
from domain.interest import Carry, MonthInterest, Terms, month_interest
from domain.periods import period_bounds, previous_period, year_month
from schemas.errors import BankflowError, ErrorCode
from schemas.month_end import (
    BatchRequest,
    BatchResult,
)

JOURNAL_KIND = "interest"
# postings.line is SMALLINT: two lines per account keeps a batch under 32767 lines.
MAX_BATCH_ACCOUNTS = 15000


ELIGIBLE = """
    FROM savings_accounts s
    JOIN ledger_accounts a ON a.id = s.account_id
    WHERE s.opened_on <= :end
      AND (a.closed_at IS NULL OR a.closed_at::date >= :start)
"""

LOCK_ACCOUNTS = text(
    """
    SELECT s.account_id, s.product_id, s.opened_on, a.closed_at::date AS closed_on,
           a.status, a.currency, a.credits_posted_minor - a.debits_posted_minor AS balance
    """
    + ELIGIBLE
    + """
      AND s.account_id BETWEEN :lo AND :hi
      AND NOT EXISTS (SELECT 1 FROM interest_postings d
                      WHERE d.account_id = s.account_id AND d.period = :period)
    ORDER BY s.account_id
    FOR UPDATE OF a
    """
)
COUNT_DONE = text(
    "SELECT count(*) FROM interest_postings WHERE period = :period "
    "AND account_id BETWEEN :lo AND :hi"
)
PREVIOUS = text(
    "SELECT account_id, accrued, residue FROM interest_postings "
    "WHERE period = :prev AND account_id = ANY(:ids)"
)
# Net postings per account and value date from the period's first day on: the end-of-day
# balances inside the period, and what was booked after it (to step back from today's balance).
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
INSERT_INTEREST = text(
    """
    INSERT INTO interest_postings (account_id, period, journal_id, currency, earned,
                                   posted_minor, tax_minor, accrued, residue)
    SELECT r.account_id, :period, CASE WHEN r.posted > 0 THEN :journal_id END, r.currency,
           r.earned, r.posted, r.tax, r.accrued, r.residue
    FROM unnest(CAST(:ids AS bigint[]), CAST(:currencies AS text[]),
                CAST(CAST(:earned AS text[]) AS numeric[]), CAST(:posted AS bigint[]), CAST(:tax AS bigint[]),
                CAST(CAST(:accrued AS text[]) AS numeric[]),
                CAST(CAST(:residue AS text[]) AS numeric[]))
         AS r(account_id, currency, earned, posted, tax, accrued, residue)
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


async def _gl_ids(session: AsyncSession, currencies: set[str]) -> dict[tuple[str, str], int]:
    """(GL number, currency) -> ledger account id of interest expense and withholding tax."""
    codes = {
        gl_code(gl, cur): (gl.number, cur)
        for cur in currencies
        for gl in (INTEREST_EXPENSE, WITHHOLDING_TAX)
    }
    rows = await session.execute(
        select(LedgerAccount.code, LedgerAccount.id).where(LedgerAccount.code.in_(list(codes)))
    )
    found: dict[str, int] = {code: account_id for code, account_id in rows}
    for code in sorted(codes):
        if code not in found:
            raise BankflowError(ErrorCode.ACCOUNT_NOT_FOUND, f"no GL account {code}")
    return {codes[code]: account_id for code, account_id in found.items()}


def _price(
    period: str,
    start: date,
    end: date,
    accounts: list[_Account],
    changes: dict[int, list[tuple[date, int]]],
    products: dict[int, tuple[Terms, str]],
) -> list[_Priced]:
    """Pure: each account's month. Runs in a thread so the event loop keeps heartbeating and
    feeding the other batches' SQL meanwhile."""
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


async def _lock_accounts(session: AsyncSession, req: BatchRequest) -> list[_Account]:
    start, end = period_bounds(req.period)
    rows = (
        await session.execute(
            LOCK_ACCOUNTS,
            {
                "start": start,
                "end": end,
                "lo": req.first_account_id,
                "hi": req.last_account_id,
                "period": req.period,
            },
        )
    ).all()
    carry = {
        r.account_id: Carry(Decimal(r.accrued), Decimal(r.residue))
        for r in await session.execute(
            PREVIOUS,
            {"prev": previous_period(req.period), "ids": [r.account_id for r in rows]},
        )
    }
    return [
        _Account(
            account_id=r.account_id,
            product_id=r.product_id,
            opened_on=r.opened_on,
            closed_on=r.closed_on,
            is_open=r.status == "open",
            currency=r.currency,
            balance_minor=int(r.balance),
            carry=carry.get(r.account_id, Carry()),
        )
        for r in rows
    ]


async def _daily_changes(
    session: AsyncSession, ids: list[int], start: date
) -> dict[int, list[tuple[date, int]]]:
    changes: dict[int, list[tuple[date, int]]] = defaultdict(list)
    for r in await session.execute(DAILY_CHANGES, {"ids": ids, "start": start}):
        changes[r.account_id].append((r.value_date, int(r.amount)))
    return changes


async def post_interest_batch(
    session: AsyncSession, req: BatchRequest, heartbeat: Callable[[str], None]
) -> BatchResult:
    """Price and post one range of accounts for a period, exactly once (see the module doc)."""
    if req.last_account_id - req.first_account_id < 0:
        raise BankflowError(ErrorCode.VALIDATION, "an empty account range")
    start, end = period_bounds(req.period)
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"month-end:{req.period}:{req.first_account_id}"},
    )
    accounts = await _lock_accounts(session, req)
    if len(accounts) > MAX_BATCH_ACCOUNTS:
        raise BankflowError(ErrorCode.VALIDATION, f"a batch holds at most {MAX_BATCH_ACCOUNTS}")
    bounds = {"period": req.period, "lo": req.first_account_id, "hi": req.last_account_id}
    already = int(await session.scalar(COUNT_DONE, bounds) or 0)
    if not accounts:
        return BatchResult(
            accounts=already, posted_now=0, journal_id=None, interest_minor={}, tax_minor={}
        )
    heartbeat("locked")
    ids = [a.account_id for a in accounts]
    changes = await _daily_changes(session, ids, start)
    products = await _products(session)
    priced = await asyncio.to_thread(_price, req.period, start, end, accounts, changes, products)
    heartbeat("priced")
    # Another run may have posted part of this range (a different batch size): the suffix
    # keeps this journal's id distinct from that one's while staying deterministic.
    journal_id = f"month-end:{req.period}:{req.first_account_id}-{req.last_account_id}"
    if already:
        journal_id += f"+{already}"
    totals = await _write(session, req, journal_id, end, priced)
    heartbeat("written")
    return BatchResult(
        accounts=already + len(accounts),
        posted_now=len(accounts),
        journal_id=journal_id if totals[0] else None,
        interest_minor=totals[0],
        tax_minor=totals[1],
    )


async def _write(
    session: AsyncSession,
    req: BatchRequest,
    journal_id: str,
    value_date: date,
    priced: list[_Priced],
) -> tuple[dict[str, int], dict[str, int]]:
    gl = await _gl_ids(session, {p.account.currency for p in priced})
    lines: list[Line] = []
    gross: dict[str, int] = defaultdict(int)
    tax: dict[str, int] = defaultdict(int)
    for p in priced:
        cur, account_id = p.account.currency, p.account.account_id
        if p.posted_minor:
            lines.append((gl[(INTEREST_EXPENSE.number, cur)], account_id, p.posted_minor, cur))
            gross[cur] += p.posted_minor
        if p.tax_minor:
            lines.append((account_id, gl[(WITHHOLDING_TAX.number, cur)], p.tax_minor, cur))
            tax[cur] += p.tax_minor
    if lines:
        await _insert_journal(session, req, journal_id, value_date, lines)
    await session.execute(
        INSERT_INTEREST,
        {
            "period": req.period,
            "journal_id": journal_id,
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
    moved = [p for p in priced if p.posted_minor]
    if moved:
        await batch.add_to_balances(
            session,
            ids=[p.account.account_id for p in moved],
            credits=[p.posted_minor for p in moved],
            debits=[p.tax_minor for p in moved],
        )
    # Last: the GL rows every batch shares are locked only for the moment before commit.
    gl_moves: dict[int, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for cur, amount in gross.items():
        debit, credit = gl_moves[gl[(INTEREST_EXPENSE.number, cur)]]
        gl_moves[gl[(INTEREST_EXPENSE.number, cur)]] = (debit + amount, credit)
    for cur, amount in tax.items():
        debit, credit = gl_moves[gl[(WITHHOLDING_TAX.number, cur)]]
        gl_moves[gl[(WITHHOLDING_TAX.number, cur)]] = (debit, credit + amount)
    await batch.update_gl(session, gl_moves)
    return dict(gross), dict(tax)


async def _insert_journal(
    session: AsyncSession,
    req: BatchRequest,
    journal_id: str,
    value_date: date,
    lines: list[Line],
) -> None:
    await batch.insert_journal(
        session,
        journal_id=journal_id,
        kind=JOURNAL_KIND,
        description=f"Savings interest {req.period}",
        value_date=value_date,
        lines=lines,
        process_id=req.workflow_id,
        # The run's tag tells this run's postings from an earlier, interrupted run's.
        metadata={
            "period": req.period,
            "run": req.run_id,
            "accounts": [req.first_account_id, req.last_account_id],
        },
        period=req.period,
    )
