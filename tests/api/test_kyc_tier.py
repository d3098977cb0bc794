"""Issue 12.4: the basic KYC tier's limits, enforced by the workflows on the real stack (API,
Temporal dev server, worker, Postgres). A member who is not KYC-verified may take out of their
accounts (withdrawals, transfers to someone else) at most `kyc_basic_tier_limits[currency]`
`withdrawals_per_day` in all per value date, and borrow at most its `loan_principal`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import update

from activities.db import in_transaction
from activities.ledger.verify import verify_ledger
from activities.tables import LedgerAccount, Member
from schemas.settings import Settings
from tests.api.conftest import Staff
from tests.conftest import CURRENCY, Factory, Sessions
from tests.loans.conftest import LoanKit, product_body

Idem = Callable[[], dict[str, str]]
DAY_LIMIT = Decimal("1500.00")  # the default basic-tier limit in USD


@pytest.fixture
def loans(sessions: Sessions, factory: Factory, settings: Settings) -> LoanKit:
    return LoanKit(sessions, factory, settings)


async def move(api: AsyncClient, who: Staff, idem: Idem, **body: str) -> Response:
    return await api.post(
        "/v1/movements", json={"currency": CURRENCY, **body}, headers={**who.headers, **idem()}
    )


async def available(api: AsyncClient, who: Staff, number: str) -> str:
    r = await api.get(f"/v1/accounts/{number}", headers=who.headers)
    assert r.status_code == 200, r.text
    return str(r.json()["available"])


async def verify(sessions: Sessions, account: LedgerAccount) -> None:
    async def work(session: Any) -> None:
        await session.execute(
            update(Member).where(Member.id == account.member_id).values(kyc_status="verified")
        )

    await in_transaction(sessions, work)


def test_the_default_basic_tier_limit_is_what_these_tests_use(settings: Settings) -> None:
    assert settings.kyc_basic_tier_limits[CURRENCY].withdrawals_per_day == DAY_LIMIT


async def test_an_unverified_member_takes_out_at_most_the_daily_limit(
    api: AsyncClient, staff: dict[str, Staff], factory: Factory, idem: Idem, sessions: Sessions
) -> None:
    teller = staff["teller"]
    acc = await factory.savings_account(5_000_00)
    member = (await api.get(f"/v1/accounts/{acc.code}", headers=teller.headers)).json()
    own = await api.post(
        f"/v1/members/{member['member_number']}/accounts",
        json={"kind": "savings", "currency": CURRENCY},
        headers={**teller.headers, **idem()},
    )
    assert own.status_code == 201, own.text
    other = await factory.savings_account()

    for _ in range(3):  # 1,200.00 of the 1,500.00
        r = await move(api, teller, idem, kind="withdrawal", amount="400.00", from_account=acc.code)
        assert r.status_code == 201, r.text
    over = await move(api, teller, idem, kind="withdrawal", amount="400.00", from_account=acc.code)
    assert over.status_code == 422 and over.json()["error"] == "KycTierLimit", over.text
    assert "1500.00 USD a day" in over.json()["detail"]
    assert "1200.00 USD" in over.json()["detail"]
    # Above the approval threshold: refused before anything is held.
    held = await move(api, teller, idem, kind="withdrawal", amount="600.00", from_account=acc.code)
    assert held.status_code == 422 and held.json()["error"] == "KycTierLimit", held.text
    assert await available(api, teller, acc.code) == "3800.00"
    # A transfer to someone else counts; one between the member's own accounts does not.
    out = {"kind": "transfer", "from_account": acc.code, "to_account": other.code}
    r = await move(api, teller, idem, amount="300.01", **out)
    assert r.status_code == 422 and r.json()["error"] == "KycTierLimit", r.text
    mine = {"kind": "transfer", "from_account": acc.code, "to_account": own.json()["number"]}
    assert (await move(api, teller, idem, amount="450.00", **mine)).status_code == 201
    assert (await move(api, teller, idem, amount="300.00", **out)).status_code == 201
    assert await available(api, teller, acc.code) == "3050.00"
    # Once verified, the basic tier's limit no longer applies.
    await verify(sessions, acc)
    r = await move(api, teller, idem, kind="withdrawal", amount="400.00", from_account=acc.code)
    assert r.status_code == 201, r.text
    async with sessions() as s:
        assert (await verify_ledger(s)).ok


async def test_concurrent_withdrawals_never_pass_the_daily_limit_together(
    api: AsyncClient, staff: dict[str, Staff], factory: Factory, idem: Idem
) -> None:
    acc = await factory.savings_account(5_000_00)
    responses = await asyncio.gather(
        *(
            move(api, staff["teller"], idem, kind="withdrawal", amount="200.00",
                 from_account=acc.code)
            for _ in range(10)
        )
    )  # fmt: skip
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 7 and codes.count(422) == 3, codes  # 7 x 200.00 <= 1,500.00
    assert {r.json()["error"] for r in responses if r.status_code == 422} == {"KycTierLimit"}
    assert await available(api, staff["teller"], acc.code) == "3600.00"


async def test_an_unverified_applicant_borrows_at_most_the_basic_tier_principal(
    api: AsyncClient, staff: dict[str, Staff], loans: LoanKit
) -> None:
    kit = loans
    officer = await kit.staff("loan_officer")
    body = product_body(
        eligibility={"require_kyc_verified": False, "min_membership_days": 0,
                     "max_savings_multiple": "20", "no_loan_in_arrears": True},
    )  # fmt: skip
    created = await api.post("/v1/loan-products", json=body, headers=staff["admin"].headers)
    assert created.status_code == 201, created.text

    async def apply(member: str, principal: str) -> dict[str, Any]:
        r = await api.post(
            "/v1/loans",
            json={"member_number": member, "product": body["code"], "principal": principal,
                  "repayments": 12, "purpose": "stock"},
            headers={**officer.headers, "Idempotency-Key": uuid.uuid4().hex},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        loan: dict[str, Any] = r.json()
        return loan

    unverified = await kit.member(2_000_00, verified=False)
    refused = await apply(unverified, "1000.01")
    assert refused["state"] == "rejected", refused
    [tier] = [c for c in refused["eligibility"] if c["rule"] == "kyc_tier_limit"]
    assert not tier["passed"] and "1000.00 USD" in tier["detail"], tier
    within = await apply(unverified, "1000.00")
    assert within["stage"] == "awaiting_approval", within
    verified = await apply(await kit.member(2_000_00), "5000.00")
    assert verified["stage"] == "awaiting_approval", verified
    assert not [c for c in verified["eligibility"] if c["rule"] == "kyc_tier_limit"]
    # An amendment may not take it above the tier either: the workflow refuses it, typed.
    number = within["loan_number"]
    other = await kit.staff("loan_officer")
    back = await api.post(
        f"/v1/loans/{number}/decisions",
        json={"action": "return", "reason": "add the business plan"},
        headers=other.headers,
    )
    assert back.status_code == 200 and back.json()["stage"] == "returned_for_changes", back.text
    amended = await api.post(
        f"/v1/loans/{number}/amendments",
        json={"principal": "1200.00", "reason": "bigger order"},
        headers=officer.headers,
    )
    assert amended.status_code == 422 and amended.json()["error"] == "KycTierLimit", amended.text
    assert "1000.00 USD" in amended.json()["detail"]
