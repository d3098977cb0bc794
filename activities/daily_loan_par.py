"""Portfolio at risk: the daily loan job's snapshot of a business date, and the report over it.

The snapshot is one statement over the active loans: the arrears of a loan the job serviced
through D are the ones it aged for D and kept on the loan (days past due, bucket, overdue
principal and interest), so a million-loan snapshot reads the loans, not their 14 million
installments; any other loan (a date the job has not serviced, or a backfill of a date its loans
have passed) is aged from its installments as they stand, by the arrears rule of
`domain.allocation.arrears` (an installment is overdue on D once its due date is before D and it
still owes something). Outstanding principal is the loan account's balance as posted when the
job runs. It replaces the date's rows, so a re-run or backfill rewrites the same figures
instead of adding to them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from activities.daily_loan_sql import OPEN, OWED
from activities.ledger.chart import LOAN_PORTFOLIO
from activities.tables import Currency, ParSnapshot
from domain.allocation import BUCKETS
from domain.money import to_major
from schemas.daily_loan_job import PAR_THRESHOLDS, ParBucket, ParCurrency, ParReport
from schemas.errors import BankflowError, ErrorCode

# Days past due every loan of a bucket exceeds: a bucket counts towards a PAR figure when its
# floor reaches the figure's threshold.
BUCKET_FLOOR = {"current": 0, "1-30": 0, "31-60": 30, "61-90": 60, "over_90": 90}

# Principal outstanding of a loan: its loan account's balance as posted when the job runs.
PRINCIPAL = "a.debits_posted_minor - a.credits_posted_minor"
WRITE_SNAPSHOT = text(
    f"""
    WITH aged AS (
        -- Serviced through the date: the arrears the job aged for it, kept on the loan.
        SELECT l.currency, {PRINCIPAL} AS principal, l.overdue_minor AS overdue,
               l.arrears_bucket AS bucket
        FROM loans l JOIN ledger_accounts a ON a.id = l.ledger_account_id
        WHERE l.state = 'active' AND l.disbursed_on <= :d AND l.serviced_through = :d
        UNION ALL
        -- Any other (a date the job has not serviced, or a backfill of one it has passed):
        -- from the loan's installments as they stand.
        SELECT l.currency, {PRINCIPAL}, COALESCE(o.amount, 0),
               CASE WHEN o.since IS NULL THEN 'current'
                    WHEN :d - o.since <= 30 THEN '1-30'
                    WHEN :d - o.since <= 60 THEN '31-60'
                    WHEN :d - o.since <= 90 THEN '61-90'
                    ELSE 'over_90' END
        FROM loans l JOIN ledger_accounts a ON a.id = l.ledger_account_id
        CROSS JOIN LATERAL (
            SELECT min(i.due_on) AS since, sum({OWED}) AS amount
            FROM loan_installments i
            WHERE i.loan_id = l.id AND i.due_on < :d AND {OPEN}
        ) o
        WHERE l.state = 'active' AND l.disbursed_on <= :d
          AND l.serviced_through IS DISTINCT FROM :d
    ), sums AS (
        SELECT currency, bucket, count(*) AS loans, sum(principal) AS principal,
               sum(overdue) AS overdue
        FROM aged GROUP BY currency, bucket
    )
    INSERT INTO par_snapshots (business_date, currency, bucket, loans,
                               outstanding_principal_minor, overdue_minor)
    SELECT :d, c.currency, b.bucket, COALESCE(x.loans, 0), COALESCE(x.principal, 0),
           COALESCE(x.overdue, 0)
    FROM (SELECT DISTINCT currency FROM ledger_accounts
          WHERE kind = 'gl' AND code = :portfolio || '-' || currency) c
    CROSS JOIN unnest(CAST(:buckets AS text[])) AS b(bucket)
    LEFT JOIN sums x ON x.currency = c.currency AND x.bucket = b.bucket
    """
)


async def write_par_snapshot(session: AsyncSession, on: date) -> int:
    """Replace the snapshot of `on`: every bucket of every currency the institution lends in (it
    has a loan portfolio account), zeros included, so a report shows the whole ladder and a day
    with no loans at risk is a report of zeros, not a missing one. Returns the rows written."""
    await session.execute(text("DELETE FROM par_snapshots WHERE business_date = :d"), {"d": on})
    result = await session.execute(
        WRITE_SNAPSHOT, {"d": on, "buckets": list(BUCKETS), "portfolio": LOAN_PORTFOLIO.number}
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _ratio(part: int, whole: int) -> str:
    if whole == 0:
        return "0.0000"
    return str((Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"), ROUND_HALF_EVEN))


async def par_report(session: AsyncSession, on: date) -> ParReport:
    """The stored snapshot of `on` with PAR1/30/60/90; NotFound if the job never ran for it."""
    rows = (
        await session.scalars(
            select(ParSnapshot).where(ParSnapshot.business_date == on).order_by(ParSnapshot.id)
        )
    ).all()
    if not rows:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no portfolio-at-risk snapshot for {on}")
    scales = {c: int(n) for c, n in await session.execute(select(Currency.code, Currency.scale))}
    by_currency: dict[str, dict[str, ParSnapshot]] = defaultdict(dict)
    for row in rows:
        by_currency[row.currency][row.bucket] = row
    return ParReport(
        business_date=on,
        currencies=[
            _currency(cur, buckets, scales[cur]) for cur, buckets in sorted(by_currency.items())
        ],
    )


def _currency(currency: str, rows: dict[str, ParSnapshot], scale: int) -> ParCurrency:
    ladder = [rows[b] for b in BUCKETS if b in rows]
    total = sum(r.outstanding_principal_minor for r in ladder)
    par = {
        name: _ratio(
            sum(
                r.outstanding_principal_minor
                for r in ladder
                if r.bucket != "current" and BUCKET_FLOOR[r.bucket] >= days
            ),
            total,
        )
        for name, days in PAR_THRESHOLDS.items()
    }
    return ParCurrency(
        currency=currency,
        loans=sum(r.loans for r in ladder),
        outstanding_principal=to_major(total, scale),
        buckets=[
            ParBucket(
                bucket=r.bucket,
                loans=r.loans,
                outstanding_principal=to_major(r.outstanding_principal_minor, scale),
                overdue=to_major(r.overdue_minor, scale),
            )
            for r in ladder
        ],
        par=par,
    )
