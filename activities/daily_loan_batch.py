"""The daily loan job, a batch of active loans at a time: arrears ageing, penalties and interest
accrual up to a business date D, with set-based SQL.

One batch = one loan-id range = one transaction:
1. lock the range's active loans not yet serviced through D, in ascending id order (FOR UPDATE,
   not SKIP LOCKED: a repayment holds a loan's lock for one short transaction, so waiting for it
   costs milliseconds, while skipping would need a come-back pass to keep "every loan through D"
   true; repayments lock the loan before any ledger account, as this batch does, so the two
   never deadlock);
2. read every installment of those loans in one query;
3. service each loan day by day from serviced_through+1 (or disbursed_on+1) through D
   (`service_loan`, pure, off the event loop);
4. write the loans' new arrears and counters, the installments' penalties and one journal for the
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
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from activities import metrics
from activities.daily_loan_servicing import LoanRow, Serviced, service_all
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
LOCK_LOANS = text(
    """
    SELECT l.id, l.currency, l.disbursed_on, l.serviced_through, l.penalty_exact,
           l.interest_recognized_minor,
           COALESCE(t.product_snapshot->>'penalty_rate', '0') AS penalty_rate,
           COALESCE(t.product_snapshot->>'accounting', 'cash') AS accounting,
           COALESCE(t.product_snapshot->>'rounding_mode', 'HALF_EVEN') AS rounding_mode
    FROM loans l JOIN loan_terms t ON t.loan_id = l.id
    WHERE l.state = 'active' AND l.id BETWEEN :lo AND :hi AND t.loan_id BETWEEN :lo AND :hi
      AND l.disbursed_on <= :d AND (l.serviced_through IS NULL OR l.serviced_through < :d)
    ORDER BY l.id
    FOR UPDATE OF l
    """
)
# The installments servicing through D can see, read by the range (one index range scan; a list
# of ids makes the planner scan the whole table): one that begins on D or later and falls due
# after D is never overdue by D and has earned nothing by then, so only a penalty on it could
# count (none is ever charged to one, but it is read if there is). Rows of loans the batch did
# not lock are skipped.
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
COUNT_ACTIVE = text("SELECT count(*) " + ACTIVE + " AND id BETWEEN :lo AND :hi")
# Daily rows already written for D in the range: grows with every batch journal posted for it,
# so it tells journals of later passes over the same range apart.
COUNT_DAILY = text(
    "SELECT count(*) FROM loan_transactions WHERE loan_id BETWEEN :lo AND :hi "
    "AND value_date = :d AND kind IN ('penalty', 'accrual')"
)
UPDATE_LOANS = text(
    """
    UPDATE loans l
    SET serviced_through = :d, days_past_due = u.dpd, arrears_bucket = u.bucket,
        overdue_since = u.since, penalty_exact = u.exact,
        interest_recognized_minor = l.interest_recognized_minor + u.accrual,
        interest_receivable_minor = l.interest_receivable_minor + u.accrual,
        penalty_receivable_minor = l.penalty_receivable_minor + u.penalty_posted
    FROM unnest(CAST(:ids AS bigint[]), CAST(:dpd AS int[]), CAST(:bucket AS text[]),
                CAST(:since AS date[]), CAST(:exact AS numeric[]),
                CAST(:accrual AS bigint[]), CAST(:penalty_posted AS bigint[]))
         AS u(id, dpd, bucket, since, exact, accrual, penalty_posted)
    WHERE l.id = u.id
    """
)
CHARGE_INSTALLMENTS = text(
    """
    UPDATE loan_installments i
    SET penalty_minor = i.penalty_minor + u.amount, completed_on = NULL
    FROM unnest(CAST(:loans AS bigint[]), CAST(:numbers AS int[]), CAST(:amounts AS bigint[]))
         AS u(loan_id, number, amount)
    WHERE i.loan_id = u.loan_id AND i.number = u.number
    """
)
INSERT_TRANSACTIONS = text(
    """
    INSERT INTO loan_transactions (loan_id, kind, value_date, amount_minor, interest_minor,
                                   penalty_minor, journal_id, workflow_id)
    SELECT u.loan_id, u.kind, :d, u.amount,
           CASE WHEN u.kind = 'accrual' THEN u.amount ELSE 0 END,
           CASE WHEN u.kind = 'penalty' THEN u.amount ELSE 0 END, :journal_id, :workflow_id
    FROM unnest(CAST(:loans AS bigint[]), CAST(:kinds AS text[]), CAST(:amounts AS bigint[]))
         AS u(loan_id, kind, amount)
    """
)


def rounding_mode(name: str) -> str:
    """The decimal module's rounding constant named by a product snapshot (HALF_EVEN...)."""
    return str(getattr(decimal, f"ROUND_{name}"))


async def _lock(session: AsyncSession, req: BatchRequest) -> list[LoanRow]:
    rows = await session.execute(
        LOCK_LOANS, {"lo": req.first_loan_id, "hi": req.last_loan_id, "d": req.business_date}
    )
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


async def service_batch(
    session: AsyncSession, req: BatchRequest, heartbeat: Callable[[str], None]
) -> BatchResult:
    """Service one range of loans through the business date, exactly once (see the module doc)."""
    if req.last_loan_id < req.first_loan_id:
        raise BankflowError(ErrorCode.VALIDATION, "an empty loan range")
    bounds = {"lo": req.first_loan_id, "hi": req.last_loan_id, "d": req.business_date}
    await without_jit(session)
    loans = await _lock(session, req)
    total = int(await session.scalar(COUNT_ACTIVE, bounds) or 0)
    if not loans:
        return BatchResult(
            loans=total, serviced_now=0, journal_id=None, penalty_minor={}, accrual_minor={}
        )
    if len(loans) > MAX_BATCH_LOANS:
        raise BankflowError(ErrorCode.VALIDATION, f"a batch holds at most {MAX_BATCH_LOANS}")
    heartbeat("locked")
    dues = await _dues(session, bounds, loans)
    serviced = await asyncio.to_thread(service_all, loans, dues, req.business_date)
    heartbeat("serviced")
    journal_id = f"daily-loan-job:{req.business_date}:{req.first_loan_id}-{req.last_loan_id}"
    already = int(await session.scalar(COUNT_DAILY, bounds) or 0)
    if already:
        journal_id += f"+{already}"
    posted = await _write(session, req, journal_id, serviced)
    heartbeat("written")
    penalty: dict[str, int] = defaultdict(int)
    accrual: dict[str, int] = defaultdict(int)
    for s in serviced:
        penalty[s.loan.currency] += s.penalty_posted
        accrual[s.loan.currency] += s.accrual
    return BatchResult(
        loans=total,
        serviced_now=len(loans),
        journal_id=journal_id if posted else None,
        penalty_minor={c: v for c, v in penalty.items() if v},
        accrual_minor={c: v for c, v in accrual.items() if v},
    )


async def _write(
    session: AsyncSession, req: BatchRequest, journal_id: str, serviced: list[Serviced]
) -> bool:
    """Loans and installments first, the journal (and its GL rows) last; True if it posted."""
    d = req.business_date
    # Every array as one literal (`pg_array`): psycopg's list dumper costs more than the SQL.
    await session.execute(
        UPDATE_LOANS,
        {
            "d": d,
            "ids": pg_array([s.loan.loan_id for s in serviced]),
            "dpd": pg_array([s.days_past_due for s in serviced]),
            "bucket": pg_array([s.bucket for s in serviced]),
            "since": pg_array([s.overdue_since for s in serviced]),
            "exact": pg_array([s.penalty_exact for s in serviced]),  # exact, as text
            "accrual": pg_array([s.accrual for s in serviced]),
            "penalty_posted": pg_array([s.penalty_posted for s in serviced]),
        },
    )
    charged = [s for s in serviced if s.penalty_charged]
    if charged:
        await session.execute(
            CHARGE_INSTALLMENTS,
            {
                "loans": pg_array([s.loan.loan_id for s in charged]),
                "numbers": pg_array([s.penalty_installment for s in charged]),
                "amounts": pg_array([s.penalty_charged for s in charged]),
            },
        )
    accounts = {
        cur: await gl_ids(session, cur, GL_ACCOUNTS)
        for cur in sorted({s.loan.currency for s in serviced if s.penalty_posted or s.accrual})
    }
    if not accounts:
        return False
    lines, moves, rows = journal_lines(serviced, accounts)
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
        INSERT_TRANSACTIONS,
        {
            "d": d,
            "journal_id": journal_id,
            "workflow_id": req.workflow_id,
            "loans": pg_array([r[0] for r in rows]),
            "kinds": pg_array([r[1] for r in rows]),
            "amounts": pg_array([r[2] for r in rows]),
        },
    )
    # Last: the GL rows every batch shares are locked only for the moment before commit.
    await batch.update_gl(session, moves)
    metrics.journal_posted(
        session,
        JOURNAL_KIND,
        [PostingLine(debit_account_id=a, credit_account_id=b, amount_minor=m, currency=c)
         for a, b, m, c in lines],
    )  # fmt: skip
    return True


def journal_lines(
    serviced: list[Serviced], accounts: Mapping[str, Mapping[str, int]]
) -> tuple[list[Line], dict[int, tuple[int, int]], list[tuple[int, str, int]]]:
    """The batch journal's lines: one per currency and kind (receivable <- income; both are GL
    accounts, so a line per loan would only repeat the same two accounts), the GL moves they
    make, and the per-loan detail as loan_transactions rows (loan, kind, amount)."""
    sums: dict[tuple[str, str], int] = defaultdict(int)
    rows: list[tuple[int, str, int]] = []
    for s in serviced:
        for kind, amount in (("penalty", s.penalty_posted), ("accrual", s.accrual)):
            if amount:
                sums[(s.loan.currency, kind)] += amount
                rows.append((s.loan.loan_id, kind, amount))
    lines: list[Line] = []
    moves: dict[int, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for (cur, kind), amount in sorted(sums.items(), key=lambda kv: (kv[0][0], KINDS[kv[0][1]])):
        debit, credit = (accounts[cur][gl.number] for gl in PAIRS[kind])
        lines.append((debit, credit, amount, cur))
        moves[debit] = (moves[debit][0] + amount, moves[debit][1])
        moves[credit] = (moves[credit][0], moves[credit][1] + amount)
    return lines, dict(moves), rows
