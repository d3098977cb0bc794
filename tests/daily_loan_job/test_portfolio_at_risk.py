"""Portfolio at risk: the snapshot the job writes for a date, its PAR ratios, and the report
route's roles and refusals.

Worked numbers for 2026-05-15: a 1,200.00 loan disbursed 2026-05-01 (first due 06-01) is
current; a 1,200.00 loan disbursed 2026-01-01 is 103 days past due (since 02-01, four
installments of 106.62 overdue); a 2,400.00 loan disbursed 2026-03-01 is 44 days past due (since
04-01; the installments of 04-01 and 05-01, 213.24 each, overdue). Outstanding principal 4,800.00: PAR1 = PAR30 = 3,600 / 4,800 =
0.75, PAR60 = PAR90 = 1,200 / 4,800 = 0.25.
"""

from __future__ import annotations

from datetime import date, timedelta

from httpx import AsyncClient
from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.daily_loan_par import par_report, write_par_snapshot
from activities.db import in_transaction
from activities.tables import ParSnapshot
from tests.api.conftest import Staff
from tests.daily_loan_job.conftest import Stack

DAY = date(2026, 5, 15)


async def test_par_snapshot_of_a_date(stack: Stack) -> None:
    product = await stack.product(penalty_rate="10", accounting="accrual")
    current = await stack.active_loan(product, date(2026, 5, 1))
    over_90 = await stack.active_loan(product, date(2026, 1, 1))
    late_44 = await stack.active_loan(product, date(2026, 3, 1), principal="2400.00")
    # Disbursed after the date: not in that day's portfolio.
    await stack.active_loan(product, date(2026, 5, 20))
    summary = await stack.run(DAY)
    assert (summary.loans, summary.par_rows) == (3, 5)

    async with stack.sessions() as s:
        report = await par_report(s, DAY)
    [usd] = report.currencies
    assert (usd.currency, usd.loans, usd.outstanding_principal) == ("USD", 3, "4800.00")
    assert [(b.bucket, b.loans, b.outstanding_principal, b.overdue) for b in usd.buckets] == [
        ("current", 1, "1200.00", "0.00"),
        ("1-30", 0, "0.00", "0.00"),
        ("31-60", 1, "2400.00", "426.48"),
        ("61-90", 0, "0.00", "0.00"),
        ("over_90", 1, "1200.00", "426.48"),
    ]
    assert usd.par == {"PAR1": "0.7500", "PAR30": "0.7500", "PAR60": "0.2500", "PAR90": "0.2500"}
    # The loans' own arrears agree with the snapshot.
    for loan, dpd, bucket in (
        (current, 0, "current"),
        (late_44, 44, "31-60"),
        (over_90, 103, "over_90"),
    ):
        assert (
            await stack.scalar(
                "SELECT days_past_due || ' ' || arrears_bucket FROM loans WHERE id = :i", i=loan
            )
            == f"{dpd} {bucket}"
        )

    # A re-run replaces the date's snapshot rather than adding to it.
    await stack.run(DAY, run="-again")
    assert (
        await stack.scalar("SELECT count(*) FROM par_snapshots WHERE business_date = :d", d=DAY)
        == 5
    )
    async with stack.sessions() as s:
        assert await par_report(s, DAY) == report
    # The arrears the job kept on the loans are the installments': aged from the installments
    # (as for a date the job has not serviced), the snapshot is the same.
    async with stack.sessions() as s, s.begin():
        await s.execute(text("UPDATE loans SET serviced_through = NULL"))
        await write_par_snapshot(s, DAY)
        assert await par_report(s, DAY) == report
        await s.rollback()
    # A backfill of a date the loans have passed ages them from their installments too.
    await stack.run(DAY + timedelta(days=1))
    async with stack.sessions() as s, s.begin():
        await write_par_snapshot(s, DAY)
        assert await par_report(s, DAY) == report
        await s.rollback()
    await stack.verify()


REPORT_DAY = date(2001, 2, 3)


async def snapshot(sessions: async_sessionmaker[AsyncSession]) -> None:
    """A stored snapshot for a date no other test uses (the API runs on the shared database)."""

    async def work(session: AsyncSession) -> None:
        await session.execute(delete(ParSnapshot).where(ParSnapshot.business_date == REPORT_DAY))
        for bucket, loans, principal, overdue in (
            ("current", 6, 600000, 0),
            ("1-30", 2, 200000, 3000),
            ("31-60", 1, 50000, 9000),
            ("61-90", 0, 0, 0),
            ("over_90", 1, 150000, 40000),
        ):
            session.add(
                ParSnapshot(
                    business_date=REPORT_DAY,
                    currency="USD",
                    bucket=bucket,
                    loans=loans,
                    outstanding_principal_minor=principal,
                    overdue_minor=overdue,
                )
            )

    await in_transaction(sessions, work)


async def test_a_day_without_loans_is_a_report_of_zeros(
    sessions: async_sessionmaker[AsyncSession], chart: dict[str, int]
) -> None:
    """The job ran, nothing was lent yet: the report is the ladder of zeros, not a 404."""
    day = date(1990, 1, 2)  # before every test loan's disbursement

    async def work(session: AsyncSession) -> list[tuple[str, int, str]]:
        await write_par_snapshot(session, day)
        report = await par_report(session, day)
        return [(c.currency, c.loans, c.par["PAR1"]) for c in report.currencies]

    assert ("USD", 0, "0.0000") in await in_transaction(sessions, work)


async def test_report_over_http(
    client: AsyncClient, staff: dict[str, Staff], sessions: async_sessionmaker[AsyncSession]
) -> None:
    await snapshot(sessions)
    path = "/v1/reports/portfolio-at-risk"
    for role in ("finance", "branch_manager", "ops"):
        r = await client.get(path, params={"date": "2001-02-03"}, headers=staff[role].headers)
        assert r.status_code == 200, r.text
    body = r.json()
    assert body["business_date"] == "2001-02-03"
    [usd] = body["currencies"]
    assert (usd["loans"], usd["outstanding_principal"]) == (10, "10000.00")
    # PAR1: (2,000 + 500 + 1,500) / 10,000; PAR30: 2,000 / 10,000; PAR60 = PAR90: 1,500 / 10,000
    assert usd["par"] == {"PAR1": "0.4000", "PAR30": "0.2000", "PAR60": "0.1500", "PAR90": "0.1500"}
    assert usd["buckets"][4] == {
        "bucket": "over_90", "loans": 1, "outstanding_principal": "1500.00", "overdue": "400.00"
    }  # fmt: skip


async def test_report_refusals(client: AsyncClient, staff: dict[str, Staff]) -> None:
    path = "/v1/reports/portfolio-at-risk"
    finance = staff["finance"].headers
    teller = await client.get(path, params={"date": "2001-02-03"}, headers=staff["teller"].headers)
    assert teller.status_code == 403 and teller.json()["error"] == "Forbidden"
    never = await client.get(path, params={"date": "1999-12-31"}, headers=finance)
    assert never.status_code == 404 and never.json()["error"] == "NotFound"
    future = (date.today() + timedelta(days=2)).isoformat()
    ahead = await client.get(path, params={"date": future}, headers=finance)
    assert ahead.status_code == 422 and ahead.json()["error"] == "ValidationError"
    for bad in ({"date": "2026-13-01"}, {}):
        r = await client.get(path, params=bad, headers=finance)
        assert r.status_code == 422 and r.json()["error"] == "ValidationError"
