"""The daily loan job's one day serviced in Postgres equals `service_loan`: hypothesis draws loans
(cash and accrual products, penalty rates to 6 places up to 1000 %, every rounding mode, a
carried exact penalty, interest already recognized) and their installments (any periods around
the date, paid, part-paid, waived, penalised, overdue or not, amounts up to 10^12 minor units),
runs the real statement (`daily_loan_sql.SERVICE_ONE_DAY`) and compares every loan's row with
what `service_loan` computes from the same facts.

The statement runs against temporary tables named like the real ones, in a database without
them (Postgres looks in the session's temporary schema first), so random facts need none of the
ledger, members or products the real tables' keys would ask for.
"""

from __future__ import annotations

import asyncio
import decimal
import json
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from activities.daily_loan_servicing import LoanRow, service_loan
from activities.daily_loan_sql import COLUMNS, SERVICE_ONE_DAY, SERVICED
from activities.db import make_engine, make_sessionmaker
from domain.allocation import Due
from schemas.settings import Settings
from scripts.local_postgres import create_database, drop_database

D = date(2026, 6, 30)
MODES = ("HALF_EVEN", "HALF_UP", "HALF_DOWN", "UP", "DOWN", "CEILING", "FLOOR")
TABLES = (
    """CREATE TEMP TABLE loans (id bigint PRIMARY KEY, currency text, state text,
       disbursed_on date, serviced_through date, penalty_exact numeric(30, 12),
       interest_recognized_minor bigint) ON COMMIT DROP""",
    "CREATE TEMP TABLE loan_terms (loan_id bigint, product_snapshot jsonb) ON COMMIT DROP",
    """CREATE TEMP TABLE loan_installments (loan_id bigint, number int, from_on date,
       due_on date, principal_minor bigint, interest_minor bigint, fee_minor bigint,
       penalty_minor bigint, principal_paid_minor bigint, interest_paid_minor bigint,
       fee_paid_minor bigint, penalty_paid_minor bigint, interest_waived_minor bigint)
       ON COMMIT DROP""",
)


@dataclass(frozen=True)
class Loan:
    accrual: bool
    rate: Decimal
    mode: str
    disbursed_on: date
    serviced_through: date | None
    exact: Decimal
    recognized: int
    dues: tuple[Due, ...]


amounts = st.one_of(st.integers(0, 50_000), st.integers(0, 10**12))


@st.composite
def dues(draw: st.DrawFn, first: date) -> tuple[Due, ...]:
    out = []
    start = first
    for number in range(1, draw(st.integers(0, 6)) + 1):
        due_on = start + timedelta(days=draw(st.sampled_from((0, 1, 7, 30, 31, 45))))
        principal, interest, fee, penalty = (draw(amounts) for _ in range(4))
        paid = draw(st.sampled_from(("none", "all", "some")))

        def part(whole: int, p: str = paid) -> int:
            return {"none": 0, "all": whole}.get(p, draw(st.integers(0, whole)))

        interest_paid = part(interest)
        waived = draw(st.integers(0, interest - interest_paid)) if draw(st.booleans()) else 0
        out.append(
            Due(number=number, from_on=start, due_on=due_on, principal=principal,
                interest=interest, fee=fee, penalty=penalty, principal_paid=part(principal),
                interest_paid=interest_paid, fee_paid=part(fee), penalty_paid=part(penalty),
                interest_waived=waived)
        )  # fmt: skip
        start = due_on
    return tuple(out)


@st.composite
def loans(draw: st.DrawFn) -> Loan:
    # The daily cadence (serviced through the day before), a first day (disbursed the day
    # before), no day yet (disbursed on the date), and one left behind (not this statement's).
    cadence = draw(st.sampled_from(("daily", "first", "none", "behind")))
    disbursed_on = {"first": D - timedelta(days=1), "none": D}.get(
        cadence, D - timedelta(days=draw(st.integers(2, 400)))
    )
    serviced = {"daily": D - timedelta(days=1), "behind": D - timedelta(days=3)}.get(cadence)
    if serviced is not None and serviced < disbursed_on:
        serviced = None if cadence == "behind" else serviced
    schedule = draw(dues(disbursed_on))
    rate = draw(
        st.one_of(
            st.sampled_from((Decimal(0), Decimal("36.5"), Decimal("20"), Decimal("0.000001"))),
            st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False),
        )
    )
    return Loan(
        accrual=draw(st.booleans()),
        rate=rate,
        mode=draw(st.sampled_from(MODES)),
        disbursed_on=disbursed_on,
        serviced_through=serviced,
        exact=draw(st.decimals(min_value=0, max_value=10**9, places=12, allow_nan=False)),
        recognized=draw(st.integers(0, sum(d.interest for d in schedule) + 1)),
        dues=schedule,
    )


async def insert(session: AsyncSession, batch: list[Loan]) -> None:
    for sql in TABLES:
        await session.execute(text(sql))
    for loan_id, loan in enumerate(batch, start=1):
        await session.execute(
            text("INSERT INTO loans VALUES (:id, 'USD', 'active', :on, :through, :exact, :r)"),
            {"id": loan_id, "on": loan.disbursed_on, "through": loan.serviced_through,
             "exact": loan.exact, "r": loan.recognized},
        )  # fmt: skip
        snapshot = {"penalty_rate": str(loan.rate), "rounding_mode": loan.mode,
                    "accounting": "accrual" if loan.accrual else "cash"}  # fmt: skip
        await session.execute(
            text("INSERT INTO loan_terms VALUES (:id, CAST(:s AS jsonb))"),
            {"id": loan_id, "s": json.dumps(snapshot)},
        )
        for d in loan.dues:
            await session.execute(
                text(
                    "INSERT INTO loan_installments VALUES (:id, :n, :f, :due, :p, :i, :fee, :pen,"
                    " :pp, :ip, :fp, :penp, :w)"
                ),
                {"id": loan_id, "n": d.number, "f": d.from_on, "due": d.due_on, "p": d.principal,
                 "i": d.interest, "fee": d.fee, "pen": d.penalty, "pp": d.principal_paid,
                 "ip": d.interest_paid, "fp": d.fee_paid, "penp": d.penalty_paid,
                 "w": d.interest_waived},
            )  # fmt: skip


def expected(loan_id: int, loan: Loan) -> tuple[object, ...]:
    """`service_loan` of the loan, on the installments the batch reads, as a SERVICED row."""
    read = [d for d in loan.dues if d.from_on < D or d.due_on <= D or d.penalty != 0]
    row = LoanRow(
        loan_id=loan_id,
        currency="USD",
        start=(loan.serviced_through or loan.disbursed_on) + timedelta(days=1),
        penalty_exact=loan.exact,
        interest_recognized=loan.recognized,
        penalty_rate=loan.rate,
        accrual=loan.accrual,
        rounding=getattr(decimal, f"ROUND_{loan.mode}"),
    )
    s = service_loan(row, read, D)
    return (loan_id, "USD", loan.accrual, s.days_past_due, s.bucket, s.overdue_since, s.overdue,
            s.penalty_exact, s.penalty_charged, s.penalty_installment, s.accrual)  # fmt: skip


async def run_case(url: str, batch: list[Loan]) -> None:
    engine = make_engine(Settings(database_url=url), pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            await insert(session, batch)
            await session.execute(SERVICE_ONE_DAY, {"lo": 1, "hi": len(batch), "d": D})
            got = {
                r[0]: tuple(r)
                for r in await session.execute(text(f"SELECT {', '.join(COLUMNS)} FROM {SERVICED}"))
            }
            await session.rollback()
    finally:
        await engine.dispose()
    for loan_id, loan in enumerate(batch, start=1):
        if (loan.serviced_through or loan.disbursed_on) < D - timedelta(days=1):
            assert loan_id not in got, "a loan several days behind is serviced in Python"
            continue
        assert got.get(loan_id) == expected(loan_id, loan), loan


def test_one_day_in_postgres_equals_service_loan(pg_server: str) -> None:
    name = f"bankflow_dlsql_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server, name)
    try:

        @settings(
            max_examples=100,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(batch=st.lists(loans(), min_size=1, max_size=8))
        @example(
            batch=[
                # Day penalties that are exact: 73 x 0.000001 / 36500 = 2e-12, and
                # 1 x 36.5 / 36500 = 0.001, which takes 2.499 to a half-way 2.5 (HALF_DOWN: 2).
                Loan(True, Decimal("0.000001"), "HALF_EVEN", D - timedelta(days=40),
                     D - timedelta(days=1), Decimal("0.5"), 0,
                     (Due(1, D - timedelta(days=40), D - timedelta(days=10), 73, 0),)),
                Loan(False, Decimal("36.5"), "HALF_DOWN", D - timedelta(days=40),
                     D - timedelta(days=1), Decimal("2.5") - Decimal("0.001"), 0,
                     (Due(1, D - timedelta(days=40), D - timedelta(days=10), 1, 0),)),
            ]
        )  # fmt: skip
        def check(batch: list[Loan]) -> None:
            asyncio.run(run_case(url, batch))

        check()
    finally:
        drop_database(pg_server, name)
