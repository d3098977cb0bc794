"""Bad input to the loan-book routes gets a clear 4xx in the one error shape and changes nothing:
never a 500, never a half-applied posting. One active loan is probed with malformed bodies,
amounts and dates on every route that takes input."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

from httpx import AsyncClient
from sqlalchemy import func, select

from activities.tables import Disbursement, Journal, LoanTransaction
from tests.api.conftest import Staff
from tests.loans.conftest import LoanKit
from tests.loans.repayment_kit import active_loan

TOMORROW = (date.today() + timedelta(days=1)).isoformat()
BAD_REPAYMENTS: list[Any] = [
    {},
    {"amount": "abc"},
    {"amount": "0"},
    {"amount": "-5.00"},
    {"amount": "1.001"},
    {"amount": "NaN"},
    {"amount": "Infinity"},
    {"amount": "99999999999999999999999.00"},
    {"amount": 10.5},
    {"amount": "10.00", "source": "bitcoin"},
    {"amount": "10.00", "value_date": "yesterday"},
    {"amount": "10.00", "value_date": TOMORROW},
    {"amount": "10.00", "value_date": "2000-01-01"},
    {"amount": "10.00", "extra": True},
    [],
    "10.00",
]
BAD_DISBURSEMENTS: list[Any] = [
    {"destination": "moon"},
    {"destination": "external"},
    {"destination": "external", "external_account": {"bank_code": "x"}},
    {"disbursed_on": TOMORROW},
    [],
]


async def counts(kit: LoanKit) -> tuple[int, int, int]:
    async with kit.sessions() as s:
        return (
            int(await s.scalar(select(func.count()).select_from(Journal)) or 0),
            int(await s.scalar(select(func.count()).select_from(LoanTransaction)) or 0),
            int(await s.scalar(select(func.count()).select_from(Disbursement)) or 0),
        )


async def test_bad_input_is_a_clear_4xx_and_changes_nothing(api: AsyncClient, kit: LoanKit) -> None:
    officer = await kit.staff("loan_officer")
    teller: Staff = await kit.staff("teller")
    manager: Staff = await kit.staff("branch_manager")
    loan = await active_loan(kit, officer, disbursed_on=date.today() - timedelta(days=40))
    base = f"/v1/loans/{loan.loan_number}"
    before = await counts(kit)
    probes: list[tuple[str, str, Staff, Any]] = [
        ("POST", f"{base}/repayments", teller, body) for body in BAD_REPAYMENTS
    ]
    probes += [("POST", f"{base}/disbursements", manager, body) for body in BAD_DISBURSEMENTS]
    probes += [
        ("POST", "/v1/loans/LN-NO-SUCH/repayments", teller, {"amount": "10.00"}),
        ("GET", f"{base}/payoff-quote?on=not-a-date", teller, None),
        ("GET", f"{base}/payoff-quote?on=1999-01-01", teller, None),
        ("GET", "/v1/loans/LN-NO-SUCH/statement", teller, None),
        ("GET", "/v1/loans/LN-NO-SUCH/payoff-quote", teller, None),
        ("GET", "/v1/reports/portfolio-at-risk?date=13-13-13", manager, None),
    ]
    for method, path, who, body in probes:
        headers = who.headers | {"Idempotency-Key": uuid.uuid4().hex}
        r = await api.request(method, path, json=body, headers=headers)
        assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)
        assert set(r.json()) == {"error", "detail"} and r.json()["detail"], (path, body, r.text)
    assert await counts(kit) == before
