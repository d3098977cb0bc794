"""Loan products, applications, decisions and the approvals inbox through the API, on the real
Temporal dev server, the real worker and Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import func, select

from activities.tables import Loan, LoanProduct
from tests.api.conftest import Staff
from tests.loans.conftest import LoanKit, product_body

Idem = Callable[[], dict[str, str]]


async def count(kit: LoanKit, model: type[Any]) -> int:
    async with kit.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def new_product(api: AsyncClient, admin: Staff, **overrides: Any) -> str:
    body = product_body(**overrides)
    created = await api.post("/v1/loan-products", json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    return str(body["code"])


def apply_body(member: str, product: str, principal: str, **extra: Any) -> dict[str, Any]:
    return {
        "member_number": member,
        "product": product,
        "principal": principal,
        "repayments": 12,
        "purpose": "shop stock",
        **extra,
    }


async def post(api: AsyncClient, path: str, who: Staff, body: dict[str, Any]) -> Response:
    return await api.post(path, json=body, headers=who.headers)


async def test_products_are_configured_by_admins_and_previewed_by_staff(
    api: AsyncClient, staff: dict[str, Staff], kit: LoanKit
) -> None:
    admin, teller = staff["admin"], staff["teller"]
    body = product_body(disbursement_fee={"kind": "percent", "value": "1.5"})
    assert (await post(api, "/v1/loan-products", teller, body)).status_code == 403
    created = await post(api, "/v1/loan-products", admin, body)
    assert created.status_code == 201, created.text
    view = created.json()
    assert view["min_principal"] == "100.00" and view["approval_tiers"][2]["up_to"] is None
    assert view["disbursement_fee"] == {"kind": "percent", "value": "1.5"}
    again = await post(api, "/v1/loan-products", admin, body)
    assert again.status_code == 409 and again.json()["error"] == "Duplicate"
    code = body["code"]
    listed = await api.get("/v1/loan-products", headers=teller.headers)
    assert code in {p["code"] for p in listed.json()}
    got = await api.get(f"/v1/loan-products/{code}", headers=teller.headers)
    assert got.status_code == 200 and got.json() == view
    preview = await post(
        api,
        f"/v1/loan-products/{code}/schedule-preview",
        teller,
        {"principal": "1200.00", "repayments": 12, "disbursed_on": "2026-01-15"},
    )
    assert preview.status_code == 200, preview.text
    schedule = preview.json()
    assert len(schedule["installments"]) == 12 and schedule["total_principal"] == "1200.00"
    assert schedule["installments"][0]["due_date"] == "2026-02-15"
    assert schedule["installments"][0]["interest"] == "12.00"  # 1% of 1,200.00 a month
    outside = await post(
        api,
        f"/v1/loan-products/{code}/schedule-preview",
        teller,
        {"principal": "99.00", "repayments": 12},
    )
    assert outside.status_code == 422 and outside.json()["error"] == "ValidationError"
    missing = await api.get("/v1/loan-products/NOPE", headers=teller.headers)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"min_principal": "500.00", "max_principal": "100.00"}, "ValidationError"),
        ({"min_repayments": 12, "max_repayments": 6}, "ValidationError"),
        ({"min_principal": "1.001"}, "InvalidAmount"),
        ({"currency": "XXX"}, "CurrencyMismatch"),
        (
            {"approval_tiers": [{"up_to": "1000.00", "levels": [{"role": "loan_officer"}]}]},
            "ValidationError",
        ),
        ({"approval_tiers": [{"levels": [{"role": "teller"}]}]}, "ValidationError"),
        ({"approval_tiers": []}, "ValidationError"),
        ({"grace_on_principal": 3}, "ValidationError"),
        ({"annual_interest_rate": 12.5, "bogus": 1}, "ValidationError"),
    ],
)
async def test_bad_products_are_refused_and_nothing_is_written(
    api: AsyncClient, staff: dict[str, Staff], kit: LoanKit, overrides: dict[str, Any], error: str
) -> None:
    before = await count(kit, LoanProduct)
    response = await post(api, "/v1/loan-products", staff["admin"], product_body(**overrides))
    assert response.status_code == 422 and response.json()["error"] == error, response.text
    assert await count(kit, LoanProduct) == before


async def test_application_post_is_idempotent_and_bad_input_writes_nothing(
    api: AsyncClient, staff: dict[str, Staff], kit: LoanKit, idem: Idem
) -> None:
    officer = await kit.staff("loan_officer")
    product = await new_product(api, staff["admin"])
    member = await kit.member()
    headers = {**officer.headers, "Idempotency-Key": uuid.uuid4().hex}
    body = apply_body(member, product, "700.00")
    first = await api.post("/v1/loans", json=body, headers=headers)
    assert first.status_code == 201, first.text
    loan = first.json()
    assert (
        loan["state"] == "submitted_and_pending_approval" and loan["stage"] == "awaiting_approval"
    )
    assert loan["assigned_role"] == "loan_officer" and loan["loan_number"].startswith("LN")
    assert first.headers["Location"] == f"/v1/loans/{loan['loan_number']}"
    second = await api.post("/v1/loans", json=body, headers=headers)
    assert second.status_code == 201 and second.json()["loan_number"] == loan["loan_number"]
    conflict = await api.post("/v1/loans", json={**body, "principal": "701.00"}, headers=headers)
    assert conflict.status_code == 409 and conflict.json()["error"] == "IdempotencyKeyConflict"
    async with kit.sessions() as s:
        mine = await s.scalar(
            select(func.count()).select_from(Loan).where(Loan.entered_by_id == officer.id)
        )
    assert mine == 1

    before = await count(kit, Loan)
    cases: list[tuple[dict[str, Any], int, str]] = [
        (apply_body("M9999999", product, "700.00"), 404, "NotFound"),
        (apply_body(member, "NOPE", "700.00"), 404, "NotFound"),
        (apply_body(member, product, "60000.00"), 422, "ValidationError"),
        (apply_body(member, product, "7.001"), 422, "InvalidAmount"),
        (apply_body(member, product, "700.00", repayments=99), 422, "ValidationError"),
        (
            apply_body(
                member, product, "700.00", guarantors=[{"member_number": member, "amount": "1.00"}]
            ),
            422,
            "ValidationError",
        ),
        (
            apply_body(
                member,
                product,
                "700.00",
                guarantors=[{"member_number": "M9999999", "amount": "1.00"}],
            ),
            404,
            "NotFound",
        ),
        ({**apply_body(member, product, "700.00"), "bogus": True}, 422, "ValidationError"),
    ]
    for bad, status, error in cases:
        response = await api.post("/v1/loans", json=bad, headers={**officer.headers, **idem()})
        assert (response.status_code, response.json()["error"]) == (status, error), bad
    assert await count(kit, Loan) == before
    finance = await api.post("/v1/loans", json=body, headers={**staff["finance"].headers, **idem()})
    assert finance.status_code == 403


async def test_a_loan_through_two_levels_with_refusals_at_the_api(
    api: AsyncClient, staff: dict[str, Staff], kit: LoanKit, idem: Idem
) -> None:
    officer, officer2 = await kit.staff("loan_officer"), await kit.staff("loan_officer")
    manager = await kit.staff("branch_manager")
    product = await new_product(api, staff["admin"])
    applied = await api.post(
        "/v1/loans",
        json=apply_body(await kit.member(5_000_00), product, "5000.00"),
        headers={**officer.headers, **idem()},
    )
    assert applied.status_code == 201, applied.text
    number = applied.json()["loan_number"]
    decide = f"/v1/loans/{number}/decisions"
    teller = await post(api, decide, staff["teller"], {"action": "approve"})
    assert teller.status_code == 403 and teller.json()["error"] == "Forbidden"  # the API's roles
    own = await post(api, decide, officer, {"action": "approve"})
    assert own.status_code == 403 and own.json()["error"] == "FourEyesViolation"
    early = await post(api, decide, manager, {"action": "approve"})
    assert early.status_code == 403 and early.json()["error"] == "Forbidden"  # the workflow's
    no_reason = await post(api, decide, officer2, {"action": "reject"})
    assert no_reason.status_code == 422
    lowered = await post(api, decide, officer2, {"action": "approve", "principal": "4000.00"})
    assert lowered.status_code == 200, lowered.text
    assert (
        lowered.json()["principal"] == "4000.00"
        and lowered.json()["assigned_role"] == "branch_manager"
    )
    twice = await post(api, decide, officer2, {"action": "approve"})
    assert twice.status_code in (403, 409)  # a loan officer no longer decides level 2
    approved = await post(api, decide, manager, {"action": "approve", "reason": "good history"})
    assert approved.status_code == 200, approved.text
    view = approved.json()
    assert view["state"] == "approved" and view["principal"] == "4000.00"
    assert view["requested_principal"] == "5000.00"
    assert view["schedule"]["total_principal"] == "4000.00"
    assert [(t["event"], t["actor"]) for t in view["trail"]][-4:] == [
        ("approval_vote", officer2.username),
        ("awaiting_approval", "system"),
        ("approval_vote", manager.username),
        ("approved", "system"),
    ]
    assert view["trail"][0]["to_state"] == "submitted_and_pending_approval"
    got = await api.get(f"/v1/loans/{number}", headers=staff["ops"].headers)
    assert got.status_code == 200 and got.json()["state"] == "approved"
    late = await post(api, decide, await kit.staff("branch_manager"), {"action": "approve"})
    assert late.status_code == 409 and late.json()["error"] == "NotAwaitingDecision"
    withdrawn = await post(
        api, f"/v1/loans/{number}/withdrawal", officer, {"reason": "bought elsewhere"}
    )
    assert withdrawn.status_code == 200 and withdrawn.json()["state"] == "withdrawn"
    missing = await api.get("/v1/loans/LN999999", headers=officer.headers)
    assert missing.status_code == 404


async def test_guarantor_consent_through_the_api(
    api: AsyncClient, staff: dict[str, Staff], kit: LoanKit, idem: Idem
) -> None:
    officer = await kit.staff("loan_officer")
    product = await new_product(
        api,
        staff["admin"],
        guarantee={"min_guaranteed_by_others_pct": "25", "own_savings_pct": "0"},
    )
    guarantor, stranger = await kit.member(2_000_00), await kit.member()
    short = await api.post(
        "/v1/loans",
        json=apply_body(
            await kit.member(),
            product,
            "800.00",
            guarantors=[{"member_number": guarantor, "amount": "100.00"}],
        ),
        headers={**officer.headers, **idem()},
    )
    assert short.json()["state"] == "rejected"  # 100.00 guaranteed, 200.00 needed
    assert any(
        not c["passed"] and c["rule"] == "guarantee_share" for c in short.json()["eligibility"]
    )
    applied = await api.post(
        "/v1/loans",
        json=apply_body(
            await kit.member(),
            product,
            "800.00",
            guarantors=[{"member_number": guarantor, "amount": "200.00"}],
        ),
        headers={**officer.headers, **idem()},
    )
    loan = applied.json()
    assert loan["stage"] == "awaiting_guarantors", loan
    assert "waiting for 1 of 1 guarantors to consent" in loan["waiting_for"]
    base = f"/v1/loans/{loan['loan_number']}/guarantors"
    nobody = await post(api, f"{base}/{stranger}/consent", staff["teller"], {"accept": True})
    assert nobody.status_code == 404
    # Issue 11.5: the loan officer who entered the application may not record the consent.
    maker = await post(api, f"{base}/{guarantor}/consent", officer, {"accept": True})
    assert maker.status_code == 403 and maker.json()["error"] == "FourEyesViolation", maker.text
    pending = (await api.get(f"/v1/loans/{loan['loan_number']}", headers=officer.headers)).json()
    assert pending["guarantors"][0]["status"] == "pending"
    ok = await post(api, f"{base}/{guarantor}/consent", staff["teller"], {"accept": True})
    assert ok.status_code == 200, ok.text
    view = ok.json()
    assert view["stage"] == "awaiting_approval"
    assert view["guarantors"][0]["status"] == "accepted"
    assert view["guarantors"][0]["recorded_by"] == staff["teller"].username
    again = await post(api, f"{base}/{guarantor}/consent", staff["teller"], {"accept": False})
    assert again.status_code == 409


async def test_the_inbox_lists_what_my_roles_may_decide(
    api: AsyncClient, staff: dict[str, Staff], kit: LoanKit, idem: Idem
) -> None:
    officer, committee = await kit.staff("loan_officer"), await kit.staff("credit_committee")
    product = await new_product(api, staff["admin"])
    applied = await api.post(
        "/v1/loans",
        json=apply_body(await kit.member(), product, "900.00"),
        headers={**officer.headers, **idem()},
    )
    number = applied.json()["loan_number"]
    found: list[dict[str, Any]] = []
    for _ in range(200):  # visibility is eventually consistent
        inbox = await api.get("/v1/approvals", headers=officer.headers)
        assert inbox.status_code == 200
        found = [i for i in inbox.json() if i["business_id"] == number]
        if found:
            break
        await asyncio.sleep(0.05)
    assert found, "the loan never reached the loan officers' inbox"
    item = found[0]
    assert (item["process"], item["assigned_role"], item["amount"], item["product"]) == (
        "LoanApproval",
        "loan_officer",
        "900.00",
        product,
    )
    assert item["link"] == f"/v1/loans/{number}" and "waiting for a loan officer" in item["details"]
    theirs = await api.get("/v1/approvals?process=LoanApproval", headers=committee.headers)
    assert number not in {i["business_id"] for i in theirs.json()}
    assert (await api.get("/v1/approvals")).status_code == 401


async def test_a_vote_retried_after_a_crash_answers_the_first_vote(
    api: AsyncClient, staff: dict[str, Staff], kit: LoanKit, idem: Idem
) -> None:
    """The API died after the level-1 vote ran, before keeping its answer: the retry with the
    same Idempotency-Key answers that vote (the Update's id comes from the key) while the loan
    still waits for level 2, instead of 409 AlreadyVoted; the vote counts once."""
    from tests.api.test_idempotency import leave_as_crashed

    officer, officer2 = await kit.staff("loan_officer"), await kit.staff("loan_officer")
    product = await new_product(api, staff["admin"])
    applied = await api.post(
        "/v1/loans",
        json=apply_body(await kit.member(5_000_00), product, "5000.00"),
        headers={**officer.headers, **idem()},
    )
    assert applied.status_code == 201, applied.text
    decide = f"/v1/loans/{applied.json()['loan_number']}/decisions"
    headers = {**officer2.headers, **idem()}
    first = await api.post(decide, json={"action": "approve"}, headers=headers)
    assert first.status_code == 200 and first.json()["assigned_role"] == "branch_manager"
    assert await leave_as_crashed(kit.sessions, officer2.id, headers["Idempotency-Key"], 0) == 1

    again = await api.post(decide, json={"action": "approve"}, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    votes = [t for t in again.json()["trail"] if t["event"] == "approval_vote"]
    assert [v["actor"] for v in votes] == [officer2.username]
