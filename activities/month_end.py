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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.errors import transaction
from activities.ledger import batch
from activities.ledger.batch import Line
from activities.ledger.chart import INTEREST_EXPENSE, WITHHOLDING_TAX, gl_code
from activities.savings import terms_of
from activities.tables import Currency, LedgerAccount, MonthEndRun, SavingsProduct
from domain.interest import Carry, MonthInterest, Terms, month_interest
from domain.money import to_major
from domain.periods import period_bounds, previous_period, year_month
from schemas.errors import BankflowError, ErrorCode
from schemas.month_end import (
    AccountRange,
    BatchRequest,
    BatchResult,
    CurrencyTotals,
    FinishRequest,
    MonthEndSummary,
    PlanRequest,
    PlanResult,
    RangesRequest,
    RangesResult,
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


# --- planning and summary ------------------------------------------------------------------


async def plan_month_end(session: AsyncSession, req: PlanRequest) -> PlanResult:
    """Claim the period's run row, or report that the period is already completed."""
    start, end = period_bounds(req.period)
    run = await session.get(MonthEndRun, req.period, with_for_update=True)
    if run is not None and run.status == "completed":
        return PlanResult(accounts_total=run.accounts, completed=await summary(session, req.period))
    if run is None:
        session.add(
            MonthEndRun(
                period=req.period,
                status="running",
                workflow_id=req.workflow_id,
                started_at=req.started_at,
            )
        )
    else:
        run.workflow_id = req.workflow_id
    total = await session.scalar(text("SELECT count(*)" + ELIGIBLE), {"start": start, "end": end})
    scales = await session.execute(select(Currency.code, Currency.scale))
    return PlanResult(accounts_total=int(total or 0), scales={c: int(n) for c, n in scales})


RANGES = text(
    """
    SELECT min(account_id) AS lo, max(account_id) AS hi
    FROM (SELECT account_id, (row_number() OVER (ORDER BY account_id) - 1) / :size AS b
          FROM (SELECT account_id FROM savings_accounts WHERE account_id > :after
                ORDER BY account_id LIMIT :rows) x) y
    GROUP BY b ORDER BY b
    """
)


async def account_ranges(session: AsyncSession, req: RangesRequest) -> RangesResult:
    """The next `limit` ranges of `batch_size` savings accounts after `after_account_id`."""
    rows = (
        await session.execute(
            RANGES,
            {
                "size": req.batch_size,
                "after": req.after_account_id,
                "rows": req.batch_size * req.limit + 1,
            },
        )
    ).all()
    ranges = [AccountRange(first_account_id=r.lo, last_account_id=r.hi) for r in rows]
    return RangesResult(ranges=ranges[: req.limit], more=len(ranges) > req.limit)


TOTALS = text(
    """
    SELECT currency, count(*) AS accounts, sum(posted_minor) AS interest, sum(tax_minor) AS tax
    FROM interest_postings WHERE period = :period GROUP BY currency ORDER BY currency
    """
)
# What one run's journals posted (an account earning nothing has no journal: not counted).
RUN_TOTALS = text(
    """
    SELECT i.currency, count(*) AS accounts, sum(i.posted_minor) AS interest,
           sum(i.tax_minor) AS tax
    FROM interest_postings i JOIN journals j ON j.id = i.journal_id
    WHERE i.period = :period AND j.process_id = :wf AND j.metadata->>'run' = :run
    GROUP BY i.currency ORDER BY i.currency
    """
)


async def finish_month_end(session: AsyncSession, req: FinishRequest) -> MonthEndSummary:
    """Store the summary from `interest_postings` itself (not from counters a crash could have
    lost) and mark the period completed."""
    totals = [
        {"currency": r.currency, "accounts": r.accounts, "interest_minor": int(r.interest),
         "tax_minor": int(r.tax)}
        for r in await session.execute(TOTALS, {"period": req.period})
    ]  # fmt: skip
    now = datetime.now(UTC)
    run = await session.get(MonthEndRun, req.period, with_for_update=True)
    if run is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"month-end {req.period} was never planned")
    if run.status != "completed":
        run.status = "completed"
        run.workflow_id = req.workflow_id
        run.accounts = sum(t["accounts"] for t in totals)
        run.totals = totals
        run.started_at = req.started_at
        run.finished_at = now
        run.duration_s = Decimal(str(round((now - req.started_at).total_seconds(), 3)))
        await session.flush()
    scales = {c: int(n) for c, n in await session.execute(select(Currency.code, Currency.scale))}
    params = {"period": req.period, "wf": req.workflow_id, "run": req.run_id}
    this_run = [
        _currency_totals(
            {"currency": r.currency, "accounts": r.accounts, "interest_minor": r.interest,
             "tax_minor": r.tax},
            scales[r.currency],
        )
        for r in await session.execute(RUN_TOTALS, params)
    ]  # fmt: skip
    return (await summary(session, req.period)).model_copy(update={"this_run": this_run})


async def summary(session: AsyncSession, period: str) -> MonthEndSummary:
    run = await session.get(MonthEndRun, period)
    if run is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no month-end run for {period}")
    scales = {c: int(n) for c, n in await session.execute(select(Currency.code, Currency.scale))}
    return MonthEndSummary(
        period=run.period,
        status=run.status,
        workflow_id=run.workflow_id,
        value_date=period_bounds(period)[1],
        accounts=run.accounts,
        totals=[_currency_totals(t, scales[t["currency"]]) for t in run.totals],
        started_at=run.started_at,
        finished_at=run.finished_at,
        duration_s=float(run.duration_s) if run.duration_s is not None else None,
    )


def _currency_totals(t: dict[str, Any], scale: int) -> CurrencyTotals:
    interest, tax = int(t["interest_minor"]), int(t["tax_minor"])
    return CurrencyTotals(
        currency=t["currency"],
        accounts=int(t["accounts"]),
        interest=to_major(interest, scale),
        tax=to_major(tax, scale),
        net=to_major(interest - tax, scale),
        interest_minor=interest,
        tax_minor=tax,
    )


class MonthEndActivities:
    """Temporal entry points; each is one transaction (`in_transaction` retries deadlocks)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name="plan_month_end")
    async def plan(self, req: PlanRequest) -> PlanResult:
        return await transaction(self.sessions, lambda s: plan_month_end(s, req))

    @activity.defn(name="month_end_ranges")
    async def ranges(self, req: RangesRequest) -> RangesResult:
        return await transaction(self.sessions, lambda s: account_ranges(s, req))

    @activity.defn(name="post_interest_batch")
    async def post_batch(self, req: BatchRequest) -> BatchResult:
        """Heartbeats between its phases: a worker that dies mid-batch is noticed within the
        heartbeat timeout, and the batch runs again elsewhere (it rolled back, or it is done)."""
        activity.heartbeat("start")
        return await transaction(
            self.sessions, lambda s: post_interest_batch(s, req, activity.heartbeat)
        )

    @activity.defn(name="finish_month_end")
    async def finish(self, req: FinishRequest) -> MonthEndSummary:
        return await transaction(self.sessions, lambda s: finish_month_end(s, req))

    def all(self) -> list[Callable[..., Awaitable[object]]]:
        return [self.plan, self.ranges, self.post_batch, self.finish]
