"""A loan's views through its whole life on the real stack (API, Temporal, worker, Postgres):
`GET /v1/loans/{id}` shows the current schedule in every state (proposed before disbursement,
the loan book's with what is paid after it), and no field is left stale by a state change:
disbursement, repayment, closure, overpayment, the undo of a disbursement, withdrawal."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

from httpx import AsyncClient, Response
from temporalio.client import Client

from domain.money import to_minor
from schemas.disbursements import DisbursementState
from schemas.reversals import ReversalState
from tests.api.conftest import Staff
from tests.loans.conftest import LoanKit
from tests.loans.disbursement_kit import Books, approved_loan


async def post(api: AsyncClient, path: str, who: Staff, body: dict[str, Any]) -> Response:
    return await api.post(
        path, json=body, headers=who.headers | {"Idempotency-Key": uuid.uuid4().hex}
    )


async def view(api: AsyncClient, number: str, who: Staff) -> dict[str, Any]:
    r = await api.get(f"/v1/loans/{number}", headers=who.headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def disburse(api: AsyncClient, client: Client, number: str, who: Staff) -> None:
    r = await post(api, f"/v1/loans/{number}/disbursements", who, {"destination": "savings"})
    assert r.status_code == 202, r.text
    handle = client.get_workflow_handle(r.json()["workflow_id"], result_type=DisbursementState)
    assert (await handle.result()).status == "completed"


def months_after(day: date, months: int) -> date:
    month = day.month - 1 + months
    return day.replace(year=day.year + month // 12, month=month % 12 + 1)


async def test_the_loan_view_shows_its_current_schedule_in_every_state(
    api: AsyncClient, temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    loan = await approved_loan(kit, temporal_client, worker)  # 800.00 over 12 months
    number = loan.inp.loan_number
    manager, teller = await kit.staff("branch_manager"), await kit.staff("teller")

    # Approved: the proposed schedule, from the expected disbursement date, nothing paid.
    approved = await view(api, number, teller)
    proposed = approved["schedule"]
    assert (approved["state"], proposed["basis"]) == ("approved", "proposed")
    assert proposed["starts_on"] == loan.inp.expected_disbursement_on.isoformat()
    assert len(proposed["installments"]) == 12 and proposed["total_principal"] == "800.00"
    assert (proposed["total_paid"], proposed["total_outstanding"]) == (
        "0.00",
        proposed["total_due"],
    )
    assert approved["disbursed_on"] is None and approved["closed_on"] is None

    # Active: the loan book's schedule, due dates from the disbursement date.
    await disburse(api, temporal_client, number, manager)
    today = date.today()
    active = await view(api, number, teller)
    schedule = active["schedule"]
    assert (active["state"], active["stage"], schedule["basis"]) == (
        "active",
        "disbursed",
        "disbursed",
    )
    assert active["disbursed_on"] == schedule["starts_on"] == today.isoformat()
    assert [i["due_on"] for i in schedule["installments"]] == [
        months_after(today, n).isoformat() for n in range(1, 13)
    ]
    statement = (await api.get(f"/v1/loans/{number}/statement", headers=teller.headers)).json()
    assert schedule["installments"] == statement["schedule"]
    assert active["waiting_for"] == f"{number}: active since {today}"

    # A repayment shows as paid on the view's schedule, as on the statement's.
    r = await post(api, f"/v1/loans/{number}/repayments", teller, {"amount": "100.00"})
    assert r.status_code == 201, r.text
    repaid = (await view(api, number, teller))["schedule"]
    assert repaid["total_paid"] == "100.00"
    assert repaid["installments"][0]["paid"] != "0.00"
    statement = (await api.get(f"/v1/loans/{number}/statement", headers=teller.headers)).json()
    assert repaid["installments"] == statement["schedule"]

    # Paid off in cash with 25.00 more: overpaid, closed, every installment completed.
    quote = (await api.get(f"/v1/loans/{number}/payoff-quote", headers=teller.headers)).json()
    amount = f"{(to_minor(quote['amount'], 2) + 25_00) / 100:.2f}"
    r = await post(
        api, f"/v1/loans/{number}/repayments", teller, {"amount": amount, "source": "cash"}
    )
    assert r.status_code == 201 and r.json()["loan_state"] == "overpaid", r.text
    closed = await view(api, number, teller)
    assert (closed["state"], closed["stage"], closed["overpaid"]) == ("overpaid", "closed", "25.00")
    assert closed["closed_on"] == today.isoformat()
    assert closed["waiting_for"] == (
        f"{number}: closed on {today}: overpaid by 25.00 USD, credited to savings"
    )
    assert closed["schedule"]["basis"] == "disbursed"
    assert closed["schedule"]["total_outstanding"] == "0.00"
    assert all(i["completed_on"] == today.isoformat() for i in closed["schedule"]["installments"])
    assert await Books(kit).verified()


async def test_undoing_a_disbursement_brings_back_the_approved_view(
    api: AsyncClient, temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    loan = await approved_loan(kit, temporal_client, worker)
    number = loan.inp.loan_number
    manager, teller = await kit.staff("branch_manager"), await kit.staff("teller")
    await disburse(api, temporal_client, number, manager)
    [attempt] = (await api.get(f"/v1/loans/{number}/disbursements", headers=teller.headers)).json()

    journal = attempt["journal_id"]
    r = await post(
        api, f"/v1/journals/{journal}/reversals", teller,
        {"reason_code": "wrong_account", "reason": "disbursed to the wrong member"},
    )  # fmt: skip
    assert r.status_code == 202, r.text
    r = await post(
        api, f"/v1/journals/{journal}/reversals/decisions", manager,
        {"approve": True, "reason": "confirmed"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    done: ReversalState = await temporal_client.get_workflow_handle(
        f"reversal-{journal}", result_type=ReversalState
    ).result()
    assert done.reversal_journal_id is not None

    back = await view(api, number, teller)
    assert (back["state"], back["stage"]) == ("approved", "approved")
    assert back["disbursed_on"] is None
    assert back["waiting_for"] == (
        f"{number}: approved: disbursement undone by reversal-{journal}: waiting for disbursement"
    )
    assert back["schedule"]["basis"] == "proposed"
    assert back["schedule"]["starts_on"] == loan.inp.expected_disbursement_on.isoformat()
    [undone] = (await api.get(f"/v1/loans/{number}/disbursements", headers=teller.headers)).json()
    assert (undone["status"], undone["reversal_journal_id"]) == (
        "reversed",
        done.reversal_journal_id,
    )
    assert await Books(kit).verified()


async def test_a_withdrawn_application_still_shows_its_terms_and_schedule(
    api: AsyncClient, temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    loan = await approved_loan(kit, temporal_client, worker)
    number = loan.inp.loan_number
    officer = await kit.staff("loan_officer")
    r = await post(api, f"/v1/loans/{number}/withdrawal", officer, {"reason": "bought elsewhere"})
    assert r.status_code == 200, r.text
    withdrawn = await view(api, number, officer)
    assert (withdrawn["state"], withdrawn["schedule"]["basis"]) == ("withdrawn", "proposed")
    assert withdrawn["schedule"]["total_principal"] == "800.00"
    assert withdrawn["schedule"]["starts_on"] == (loan.inp.expected_disbursement_on.isoformat())
    assert date.fromisoformat(withdrawn["schedule"]["installments"][0]["due_on"]) > (
        loan.inp.expected_disbursement_on + timedelta(days=27)
    )


async def test_a_reversal_that_reopens_a_closed_loan_shows_it_active_again(
    api: AsyncClient, temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    loan = await approved_loan(kit, temporal_client, worker)
    number = loan.inp.loan_number
    manager, teller = await kit.staff("branch_manager"), await kit.staff("teller")
    await disburse(api, temporal_client, number, manager)
    quote = (await api.get(f"/v1/loans/{number}/payoff-quote", headers=teller.headers)).json()
    r = await post(api, f"/v1/loans/{number}/repayments", teller, {"amount": quote["amount"]})
    assert r.status_code == 201 and r.json()["loan_state"] == "closed_obligations_met", r.text
    closed = await view(api, number, teller)
    assert (closed["stage"], closed["closed_on"]) == ("closed", date.today().isoformat())
    assert closed["waiting_for"] == f"{number}: closed on {date.today()}: obligations met"

    journal = r.json()["journal_id"]
    r = await post(
        api, f"/v1/journals/{journal}/reversals", teller,
        {"reason_code": "wrong_amount", "reason": "taken from the wrong account"},
    )  # fmt: skip
    assert r.status_code == 202, r.text
    r = await post(api, f"/v1/journals/{journal}/reversals/decisions", manager, {"approve": True})
    assert r.status_code == 200 and r.json()["reversal_journal_id"], r.text

    reopened = await view(api, number, teller)
    assert (reopened["state"], reopened["stage"]) == ("active", "disbursed")
    assert (reopened["closed_on"], reopened["overpaid"]) == (None, "0.00")
    assert reopened["waiting_for"] == f"{number}: active since {date.today()}"
    assert reopened["schedule"]["total_paid"] == "0.00"
    assert reopened["schedule"]["total_outstanding"] == reopened["schedule"]["total_due"]
    assert all(i["completed_on"] is None for i in reopened["schedule"]["installments"])
    assert await Books(kit).verified()
