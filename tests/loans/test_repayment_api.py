"""Loan repayments through the API on the real stack: a loan's full life from disbursement to
closure with balances checked at each step, the payoff quote and statement, and the refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from httpx import AsyncClient
from temporalio.client import Client

from activities.ledger.chart import INTEREST_INCOME
from domain.money import to_major, to_minor
from tests.api.conftest import Staff
from tests.loans.conftest import LoanKit
from tests.loans.repayment_kit import (
    active_loan,
    balance,
    finished,
    hold_status,
    installments,
    key,
    ledger_ok,
    member_email,
    outbox,
    repay,
    repayments_of,
    trail,
)
from tests.workflows.conftest import record_history

TODAY = datetime.now(UTC).date()


async def test_a_loan_from_disbursement_through_repayments_to_closure(
    api: AsyncClient, kit: LoanKit, staff: dict[str, Staff], temporal_client: Client
) -> None:
    teller = staff["teller"]
    start = TODAY - timedelta(days=40)
    loan = await active_loan(
        kit, await kit.staff("loan_officer"), disbursed_on=start, lien_minor=300_00
    )
    income = kit.factory.gl(INTEREST_INCOME.number)
    first, second = (await installments(kit, loan.loan_id))[:2]
    savings0, income0 = await balance(kit, loan.savings_id), await balance(kit, income)
    assert -(await balance(kit, loan.loan_account_id)) == 1200_00

    # 1. 50.00 from savings inside the first period: its whole interest, then principal.
    r = await repay(api, teller, loan, "50.00", on=start + timedelta(days=5))
    assert r.status_code == 201, r.text
    paid = r.json()
    interest1 = first.interest_minor
    assert paid["interest"] == f"{interest1 / 100:.2f}"
    assert paid["principal"] == f"{(50_00 - interest1) / 100:.2f}"
    assert paid["installments"] == [
        {
            "installment": 1,
            "penalty": "0.00",
            "fee": "0.00",
            "interest": paid["interest"],
            "principal": paid["principal"],
        }
    ]
    assert paid["loan_state"] == "active" and not paid["closed"]
    assert await balance(kit, loan.savings_id) == savings0 - 50_00
    assert await balance(kit, income) == income0 + interest1
    assert -(await balance(kit, loan.loan_account_id)) == 1200_00 - (50_00 - interest1)
    await finished(temporal_client, paid["workflow_id"])
    await record_history(
        temporal_client.get_workflow_handle(paid["workflow_id"]), "loan_repayment_partial"
    )
    email = await member_email(kit, loan.member_id)
    assert await outbox(kit, paid["workflow_id"]) == [("loan_repayment_received", email)]
    await ledger_ok(kit)

    # 2. 100.00 in cash: the rest of installment 1's principal, then in advance installment
    # 2's interest and principal. Savings are untouched.
    r = await repay(api, teller, loan, "100.00", source="cash", on=start + timedelta(days=20))
    assert r.status_code == 201, r.text
    interest2 = second.interest_minor
    rest1 = first.principal_minor - (50_00 - interest1)
    assert [p["installment"] for p in r.json()["installments"]] == [1, 2]
    assert r.json()["installments"][0]["principal"] == f"{rest1 / 100:.2f}"
    assert r.json()["interest"] == f"{interest2 / 100:.2f}"
    assert r.json()["principal"] == f"{(100_00 - interest2) / 100:.2f}"
    assert await balance(kit, loan.savings_id) == savings0 - 50_00
    assert await balance(kit, income) == income0 + interest1 + interest2
    principal_left = 1200_00 - (50_00 - interest1) - (100_00 - interest2)
    assert -(await balance(kit, loan.loan_account_id)) == principal_left
    await ledger_ok(kit)

    # 3. The payoff quote for today closes it; the statement agrees.
    q = await api.get(f"/v1/loans/{loan.loan_number}/payoff-quote", headers=teller.headers)
    assert q.status_code == 200, q.text
    quote = q.json()
    assert quote["on"] == TODAY.isoformat() and quote["principal"] == f"{principal_left / 100:.2f}"
    assert quote["penalties"] == "0.00" and quote["fees"] == "0.00"
    assert float(quote["interest_waived"]) > 0  # the later periods' interest
    s = (await api.get(f"/v1/loans/{loan.loan_number}/statement", headers=teller.headers)).json()
    assert s["state"] == "active" and s["outstanding"]["principal"] == quote["principal"]
    assert s["days_past_due"] == 0 and s["arrears_bucket"] == "current"  # 1 is paid
    assert s["schedule"][0]["completed_on"] == (start + timedelta(days=20)).isoformat()
    assert s["schedule"][1]["completed_on"] is None
    assert s["schedule"][1]["paid"] == to_major(100_00 - rest1, 2)

    r = await repay(api, teller, loan, quote["amount"])
    assert r.status_code == 201, r.text
    closing = r.json()
    assert closing["closed"] and closing["loan_state"] == "closed_obligations_met"
    assert closing["overpayment"] == "0.00" and closing["outstanding"] == "0.00"
    assert closing["interest_waived"] == quote["interest_waived"]
    assert await balance(kit, loan.loan_account_id) == 0
    paid_off = to_minor(quote["amount"], 2)
    assert await balance(kit, loan.savings_id) == savings0 - 50_00 - paid_off
    assert loan.lien_id is not None and await hold_status(kit, loan.lien_id) == "voided"
    await finished(temporal_client, closing["workflow_id"])
    await record_history(
        temporal_client.get_workflow_handle(closing["workflow_id"]), "loan_repayment_closing"
    )
    assert await outbox(kit, closing["workflow_id"]) == [
        ("loan_repayment_received", email),
        ("loan_closed", email),
    ]
    assert (await kit.loan(loan.loan_id)).closed_on == TODAY
    assert (await trail(kit, loan.loan_id))[-4:] == [
        ("repayment", None),
        ("repayment", None),
        ("repayment", None),
        ("closed", "closed_obligations_met"),
    ]
    await ledger_ok(kit)

    s = (await api.get(f"/v1/loans/{loan.loan_number}/statement", headers=teller.headers)).json()
    assert s["state"] == "closed_obligations_met" and s["outstanding"]["total"] == "0.00"
    assert [t["kind"] for t in s["transactions"]] == ["disbursement"] + ["repayment"] * 3
    assert s["transactions"][0]["principal_balance"] == "1200.00"
    assert s["transactions"][-1]["principal_balance"] == "0.00"
    assert all(not t["reversed"] for t in s["transactions"])
    assert s["transactions"][-1]["journal_id"] == f"{closing['workflow_id']}:repayment"
    assert all(i["completed_on"] is not None for i in s["schedule"])

    # 4. A closed loan takes no repayment: 409, and nothing moves.
    savings_closed = await balance(kit, loan.savings_id)
    again = await repay(api, teller, loan, "10.00")
    assert again.status_code == 409 and again.json()["error"] == "LoanStateConflict"
    assert await balance(kit, loan.savings_id) == savings_closed
    assert len(await repayments_of(kit, loan.loan_id)) == 3
    await ledger_ok(kit)


async def test_refusals_leave_the_loan_untouched(
    api: AsyncClient, kit: LoanKit, staff: dict[str, Staff], temporal_client: Client
) -> None:
    teller = staff["teller"]
    start = TODAY - timedelta(days=20)
    loan = await active_loan(kit, await kit.staff("loan_officer"), disbursed_on=start)
    savings0 = await balance(kit, loan.savings_id)
    for amount in ("12.345", "-5", "0", "lots"):
        r = await repay(api, teller, loan, amount)
        assert r.status_code == 422 and r.json()["error"] == "InvalidAmount", (amount, r.text)
    r = await repay(api, teller, loan, "10.00", on=TODAY + timedelta(days=1))
    assert r.status_code == 422 and "future" in r.json()["detail"]
    r = await repay(api, teller, loan, "10.00", on=start - timedelta(days=1))
    assert r.status_code == 422 and "before the disbursement" in r.json()["detail"]
    r = await repay(api, staff["finance"], loan, "10.00")
    assert r.status_code == 403 and r.json()["error"] == "Forbidden"
    assert (
        await api.post(
            "/v1/loans/LN999999999/repayments", json={"amount": "1"}, headers=teller.headers | key()
        )
    ).status_code == 404
    for path in ("payoff-quote", "statement"):
        missing = await api.get(f"/v1/loans/LN999999999/{path}", headers=teller.headers)
        assert missing.status_code == 404 and missing.json()["error"] == "NotFound"
        refused = await api.get(
            f"/v1/loans/{loan.loan_number}/{path}", headers=staff["none"].headers
        )
        assert refused.status_code == 403
    early = await api.get(
        f"/v1/loans/{loan.loan_number}/payoff-quote",
        params={"on": (start - timedelta(days=1)).isoformat()},
        headers=teller.headers,
    )
    assert early.status_code == 422
    assert await balance(kit, loan.savings_id) == savings0
    assert await repayments_of(kit, loan.loan_id) == []

    # A repayment dated before the latest one would need re-allocation: refused by the workflow.
    assert (await repay(api, teller, loan, "10.00", on=TODAY)).status_code == 201
    r = await repay(api, teller, loan, "10.00", on=TODAY - timedelta(days=1))
    assert r.status_code == 422 and "reverse them first" in r.json()["detail"]
    assert len(await repayments_of(kit, loan.loan_id)) == 1
    assert await balance(kit, loan.savings_id) == savings0 - 10_00
    await ledger_ok(kit)


async def test_an_undisbursed_loan_has_no_statement_and_takes_no_repayment(
    api: AsyncClient, kit: LoanKit, staff: dict[str, Staff]
) -> None:
    officer = await kit.staff("loan_officer")
    inp = await kit.register(officer, await kit.product(), await kit.member(), "500.00")
    teller = staff["teller"]
    s = await api.get(f"/v1/loans/{inp.loan_number}/statement", headers=teller.headers)
    assert s.status_code == 409 and s.json()["error"] == "LoanStateConflict"
    r = await api.post(
        f"/v1/loans/{inp.loan_number}/repayments",
        json={"amount": "10.00"},
        headers=teller.headers | key(),
    )
    assert r.status_code == 409 and r.json()["error"] == "LoanStateConflict"
    await ledger_ok(kit)
