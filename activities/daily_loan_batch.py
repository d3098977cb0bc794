"""The daily loan job, a batch of active loans at a time: arrears ageing, penalties and interest
accrual up to a business date D, with set-based SQL.

One batch = one loan-id range = one transaction:
1. lock the range's active loans not yet serviced through D, in ascending id order (FOR UPDATE,
   not SKIP LOCKED: a repayment holds a loan's lock for one short transaction, so waiting for it
   costs milliseconds, while skipping would need a come-back pass to keep "every loan through D"
   true; repayments lock the loan before any ledger account, as this batch does, so the two
   never deadlock);
2. service the loans whose next day is D (the daily cadence) in one statement into a temporary
   table (`daily_loan_sql.SERVICE_ONE_DAY`, the set-based twin of `service_loan`), and the few a
   missed run left several days behind day by day in Python (`service_loan`, off the event
   loop) into the same table;
3. write, from that table, the loans' new arrears and counters, the installments' penalties and one journal for the
   batch with the ledger's batch primitives: both sides of every posting are GL accounts
   (receivable <- income), so the journal carries one line per currency and kind, and what each
   loan was charged is its `loan_transactions` row pointing at that journal (one per loan and
   kind, summing to the line); the GL rows are updated last, so the accounts every batch shares
   are held for milliseconds.

Exactly once per (loan, date): `loans.serviced_through` moves to D in the same transaction as the
journal; a retried or re-run batch finds its loans serviced and posts nothing. A missed date is
caught up by the next run, and backfilling a date already covered by a later run posts nothing.
Catch-up days use the installments as they stand at the run (what was paid by then), which is
exact when the job runs daily and an approximation only for days missed around a repayment.
"""

from __future__ import annotations

import asyncio
import decimal
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from activities import metrics
from activities.daily_loan_servicing import LoanRow, service_all
from activities.daily_loan_sql import (
    COLUMNS,
    PENDING,
    PENDING_LOANS,
    SERVICE_ONE_DAY,
    SERVICED,
    START,
)
from activities.db import pg_array, without_jit
from activities.ledger import batch
from activities.ledger.batch import Line
from activities.ledger.chart import (
    INTEREST_INCOME,
    INTEREST_RECEIVABLE,
    PENALTIES_RECEIVABLE,
    PENALTY_INCOME,
)
from activities.loan_book import gl_ids
from domain.allocation import Due
from schemas.daily_loan_job import BatchRequest, BatchResult
from schemas.errors import BankflowError, ErrorCode
from schemas.ledger import PostingLine

JOURNAL_KIND = "loan_servicing"
# What one batch may lock and hold in memory (DailyJobInput.batch_size has the same bound).
MAX_BATCH_LOANS = 15000
# kind -> (debit, credit) of its line, and the order of the lines within a currency.
PAIRS = {
    "penalty": (PENALTIES_RECEIVABLE, PENALTY_INCOME),
    "accrual": (INTEREST_RECEIVABLE, INTEREST_INCOME),
}
KINDS = {kind: n for n, kind in enumerate(PAIRS)}
GL_ACCOUNTS = tuple(gl for pair in PAIRS.values() for gl in pair)

ACTIVE = "FROM loans WHERE state = 'active' AND disbursed_on <= :d"
# Locks the range's active loans not yet serviced through D, in ascending id order, and names
# the ones a missed run left more than one day behind (serviced in Python, a loop per day).
LOCK_LOANS = text(
    f"""
    WITH locked AS (
        SELECT l.id, {START} < :d AS behind
        FROM loans l
        WHERE {PENDING_LOANS}
        ORDER BY l.id
        FOR UPDATE OF l
    )
    SELECT count(*), COALESCE(array_agg(id ORDER BY id) FILTER (WHERE behind), '{{}}')
    FROM locked
    """
)
# The loans of the range a missed run left behind, as `service_loan` takes them.
BEHIND_LOANS = text(
    f"""
    SELECT l.id, l.currency, l.disbursed_on, l.serviced_through, l.penalty_exact,
           l.interest_recognized_minor,
           COALESCE(t.product_snapshot->>'penalty_rate', '0') AS penalty_rate,
           COALESCE(t.product_snapshot->>'accounting', 'cash') AS accounting,
           COALESCE(t.product_snapshot->>'rounding_mode', 'HALF_EVEN') AS rounding_mode
    FROM loans l JOIN loan_terms t ON t.loan_id = l.id
    WHERE {PENDING} AND l.id = ANY(CAST(:ids AS bigint[]))
    ORDER BY l.id
    """
)
# The installments servicing through D can see, read by the range (one index range scan; a list
# of ids makes the planner scan the whole table): one that begins on D or later and falls due
# after D is never overdue by D and has earned nothing by then, so only a penalty on it could
# count (none is ever charged to one, but it is read if there is). Rows of loans not asked for
# are skipped. `daily_loan_sql.SERVICE_ONE_DAY` reads the same ones.
INSTALLMENTS = text(
    """
    SELECT loan_id, number, from_on, due_on, principal_minor, interest_minor, fee_minor,
           penalty_minor, principal_paid_minor, interest_paid_minor, fee_paid_minor,
           penalty_paid_minor, interest_waived_minor
    FROM loan_installments
    WHERE loan_id BETWEEN :lo AND :hi
      AND (from_on < :d OR due_on <= :d OR penalty_minor <> 0)
    ORDER BY loan_id, number
    """
)
ADD_SERVICED = text(
    f"""
    INSERT INTO {SERVICED} ({", ".join(COLUMNS)})
    SELECT * FROM unnest(CAST(:loan_id AS bigint[]), CAST(:currency AS text[]),
                         CAST(:accrual AS boolean[]), CAST(:days_past_due AS int[]),
                         CAST(:bucket AS text[]), CAST(:overdue_since AS date[]),
                         CAST(:overdue_minor AS bigint[]), CAST(:penalty_exact AS numeric[]),
                         CAST(:penalty_charged AS bigint[]), CAST(:penalty_installment AS int[]),
                         CAST(:accrual_minor AS bigint[]))
    """
)
COUNT_ACTIVE = text("SELECT count(*) " + ACTIVE + " AND id BETWEEN :lo AND :hi")
# Daily rows already written for D in the range: grows with every batch journal posted for it,
# so it tells journals of later passes over the same range apart.
COUNT_DAILY = text(
    "SELECT count(*) FROM loan_transactions WHERE loan_id BETWEEN :lo AND :hi "
    "AND value_date = :d AND kind IN ('penalty', 'accrual')"
)
# What an accrual product books of a charged penalty now (a cash product books it when paid).
POSTED = "CASE WHEN u.accrual THEN u.penalty_charged ELSE 0 END"
# Each loan's booked amounts, one row per kind (`k.n` orders penalty before accrual).
BOOKED = f"""{SERVICED} u
    CROSS JOIN LATERAL (VALUES (1, 'penalty', {POSTED}), (2, 'accrual', u.accrual_minor))
         AS k(n, kind, amount)
    WHERE k.amount > 0"""
UPDATE_LOANS = text(
    f"""
    UPDATE loans l
    SET serviced_through = :d, days_past_due = u.days_past_due, arrears_bucket = u.bucket,
        overdue_since = u.overdue_since, overdue_minor = u.overdue_minor,
        penalty_exact = u.penalty_exact,
        interest_recognized_minor = l.interest_recognized_minor + u.accrual_minor,
        interest_receivable_minor = l.interest_receivable_minor + u.accrual_minor,
        penalty_receivable_minor = l.penalty_receivable_minor + {POSTED}
    FROM {SERVICED} u
    WHERE l.id = u.loan_id AND l.id BETWEEN :lo AND :hi
    """
)
CHARGE_INSTALLMENTS = text(
    f"""
    UPDATE loan_installments i
    SET penalty_minor = i.penalty_minor + u.penalty_charged, completed_on = NULL
    FROM {SERVICED} u
    WHERE u.penalty_charged > 0 AND i.loan_id = u.loan_id AND i.number = u.penalty_installment
      AND i.loan_id BETWEEN :lo AND :hi
    """
)
# What the batch books, per currency and kind: the journal's lines.
SUMS = text(
    f"""
    SELECT u.currency, k.kind, sum(k.amount)
    FROM {BOOKED}
    GROUP BY u.currency, k.kind
    """
)
# One row per loan and kind booked, pointing at the batch journal: what each loan was charged.
INSERT_TRANSACTIONS = text(
    f"""
    INSERT INTO loan_transactions (loan_id, kind, value_date, amount_minor, interest_minor,
                                   penalty_minor, journal_id, workflow_id)
    SELECT u.loan_id, k.kind, :d, k.amount,
           CASE WHEN k.kind = 'accrual' THEN k.amount ELSE 0 END,
           CASE WHEN k.kind = 'penalty' THEN k.amount ELSE 0 END, :journal_id, :workflow_id
    FROM {BOOKED}
    ORDER BY u.loan_id, k.n
    """
)


def rounding_mode(name: str) -> str:
    """The decimal module's rounding constant named by a product snapshot (HALF_EVEN...)."""
    return str(getattr(decimal, f"ROUND_{name}"))


async def _behind(
    session: AsyncSession, bounds: Mapping[str, object], ids: list[int]
) -> list[LoanRow]:
    rows = await session.execute(BEHIND_LOANS, {**bounds, "ids": pg_array(ids)})
    # Positional, and each product's rate and rounding parsed once: a batch's loans share a
    # few products, and per-loan parsing and named access were most of this function's time.
    rates: dict[str, Decimal] = {}
    modes: dict[str, str] = {}
    day = timedelta(days=1)
    return [
        LoanRow(
            loan_id=loan_id,
            currency=currency,
            start=(serviced_through or disbursed_on) + day,
            penalty_exact=Decimal(exact),
            interest_recognized=int(recognized),
            penalty_rate=rates[rate] if rate in rates else rates.setdefault(rate, Decimal(rate)),
            accrual=accounting == "accrual",
            rounding=modes[mode] if mode in modes else modes.setdefault(mode, rounding_mode(mode)),
        )
        for (
            loan_id, currency, disbursed_on, serviced_through, exact, recognized, rate,
            accounting, mode,
        ) in rows
    ]  # fmt: skip


async def _dues(
    session: AsyncSession, bounds: Mapping[str, object], loans: list[LoanRow]
) -> dict[int, list[Due]]:
    found: dict[int, list[Due]] = {loan.loan_id: [] for loan in loans}
    # Positional: INSTALLMENTS selects Due's fields in its order after the loan id, and tens of
    # thousands of rows a batch make named access and Due's __init__ the slow part.
    for row in await session.execute(INSTALLMENTS, bounds):
        dues = found.get(row[0])
        if dues is not None:
            dues.append(Due.from_row(row[1:]))
    return found


async def _service_behind(
    session: AsyncSession, bounds: Mapping[str, object], ids: list[int], on: date
) -> None:
    """The loans a missed run left several days behind, day by day in Python, into SERVICED."""
    loans = await _behind(session, bounds, ids)
    dues = await _dues(session, bounds, loans)
    serviced = await asyncio.to_thread(service_all, loans, dues, on)
    # Every array as one literal (`pg_array`): psycopg's list dumper costs more than the SQL.
    columns: dict[str, list[int | str | date | Decimal | None]] = {
        "loan_id": [s.loan.loan_id for s in serviced],
        "currency": [s.loan.currency for s in serviced],
        "accrual": ["t" if s.loan.accrual else "f" for s in serviced],
        "days_past_due": [s.days_past_due for s in serviced],
        "bucket": [s.bucket for s in serviced],
        "overdue_since": [s.overdue_since for s in serviced],
        "overdue_minor": [s.overdue for s in serviced],
        "penalty_exact": [s.penalty_exact for s in serviced],  # exact, as text
        "penalty_charged": [s.penalty_charged for s in serviced],
        "penalty_installment": [s.penalty_installment for s in serviced],
        "accrual_minor": [s.accrual for s in serviced],
    }
    await session.execute(ADD_SERVICED, {k: pg_array(v) for k, v in columns.items()})


async def service_batch(
    session: AsyncSession, req: BatchRequest, heartbeat: Callable[[str], None]
) -> BatchResult:
    """Service one range of loans through the business date, exactly once (see the module doc)."""
    if req.last_loan_id < req.first_loan_id:
        raise BankflowError(ErrorCode.VALIDATION, "an empty loan range")
    bounds = {"lo": req.first_loan_id, "hi": req.last_loan_id, "d": req.business_date}
    await without_jit(session)
    locked, behind = (await session.execute(LOCK_LOANS, bounds)).one()
    total = int(await session.scalar(COUNT_ACTIVE, bounds) or 0)
    if not locked:
        return BatchResult(
            loans=total, serviced_now=0, journal_id=None, penalty_minor={}, accrual_minor={}
        )
    if locked > MAX_BATCH_LOANS:
        raise BankflowError(ErrorCode.VALIDATION, f"a batch holds at most {MAX_BATCH_LOANS}")
    heartbeat("locked")
    await session.execute(SERVICE_ONE_DAY, bounds)
    if behind:
        await _service_behind(session, bounds, list(behind), req.business_date)
    heartbeat("serviced")
    journal_id = f"daily-loan-job:{req.business_date}:{req.first_loan_id}-{req.last_loan_id}"
    already = int(await session.scalar(COUNT_DAILY, bounds) or 0)
    if already:
        journal_id += f"+{already}"
    sums = await _write(session, req, journal_id)
    heartbeat("written")
    return BatchResult(
        loans=total,
        serviced_now=int(locked),
        journal_id=journal_id if sums else None,
        penalty_minor={c: v for (c, kind), v in sums.items() if kind == "penalty"},
        accrual_minor={c: v for (c, kind), v in sums.items() if kind == "accrual"},
    )


async def _write(
    session: AsyncSession, req: BatchRequest, journal_id: str
) -> dict[tuple[str, str], int]:
    """Loans and installments first, the journal (and its GL rows) last, all from SERVICED;
    returns what the journal booked per (currency, kind), empty if it posted nothing."""
    d = req.business_date
    bounds = {"lo": req.first_loan_id, "hi": req.last_loan_id, "d": d}
    await session.execute(UPDATE_LOANS, bounds)
    await session.execute(CHARGE_INSTALLMENTS, bounds)
    sums = {(cur, kind): int(amount) for cur, kind, amount in await session.execute(SUMS)}
    if not sums:
        return {}
    accounts = {
        cur: await gl_ids(session, cur, GL_ACCOUNTS) for cur in sorted({c for c, _ in sums})
    }
    lines, moves = journal_lines(sums, accounts)
    await batch.insert_journal(
        session,
        journal_id=journal_id,
        kind=JOURNAL_KIND,
        description=f"Loan penalties and interest accrual {d}",
        value_date=d,
        lines=lines,
        process_id=req.workflow_id,
        # The run's tag tells this run's postings from an earlier run's of the same date.
        metadata={"business_date": d.isoformat(), "run": req.run_id,
                  "loans": [req.first_loan_id, req.last_loan_id]},
    )  # fmt: skip
    await session.execute(
        INSERT_TRANSACTIONS, {"d": d, "journal_id": journal_id, "workflow_id": req.workflow_id}
    )
    # Last: the GL rows every batch shares are locked only for the moment before commit.
    await batch.update_gl(session, moves)
    metrics.journal_posted(
        session,
        JOURNAL_KIND,
        [PostingLine(debit_account_id=a, credit_account_id=b, amount_minor=m, currency=c)
         for a, b, m, c in lines],
    )  # fmt: skip
    return sums


def journal_lines(
    sums: Mapping[tuple[str, str], int], accounts: Mapping[str, Mapping[str, int]]
) -> tuple[list[Line], dict[int, tuple[int, int]]]:
    """The batch journal's lines from what it books per (currency, kind): one per currency and
    kind (receivable <- income; both are GL accounts, so a line per loan would only repeat the
    same two accounts; each loan's share is its `loan_transactions` row), and the GL moves they
    make."""
    lines: list[Line] = []
    moves: dict[int, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for (cur, kind), amount in sorted(sums.items(), key=lambda kv: (kv[0][0], KINDS[kv[0][1]])):
        if not amount:
            continue
        debit, credit = (accounts[cur][gl.number] for gl in PAIRS[kind])
        lines.append((debit, credit, amount, cur))
        moves[debit] = (moves[debit][0] + amount, moves[debit][1])
        moves[credit] = (moves[credit][0], moves[credit][1] + amount)
    return lines, dict(moves)
