"""Disbursement through the API (real app, Temporal dev server, worker, Postgres): through the
running LoanApproval, directly once it has ended, automatically for auto-disburse products, and
the refusals."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from typing import Any

from httpx import AsyncClient, Response
from temporalio.client import Client

from schemas.disbursements import DisbursementState
from schemas.loans import LoanApprovalState, Stage
from tests.api.conftest import Staff
from tests.loans.conftest import LoanKit, send, start
from tests.loans.disbursement_kit import Books, approved_loan
from tests.workflows.conftest import record_history


async def disburse(api: AsyncClient, loan: str, who: Staff, body: dict[str, Any]) -> Response:
    return await api.post(
        f"/v1/loans/{loan}/disbursements",
        json=body,
        headers=who.headers | {"Idempotency-Key": uuid.uuid4().hex},
    )


async def finished(client: Client, workflow_id: str) -> DisbursementState:
    handle = client.get_workflow_handle(workflow_id, result_type=DisbursementState)
    state: DisbursementState = await handle.result()
    return state


async def test_disbursing_through_the_running_approval(
    api: AsyncClient, temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    loan = await approved_loan(kit, temporal_client, worker)
    number = loan.inp.loan_number
    manager = await kit.staff("branch_manager")
    body = {"destination": "savings", "disbursed_on": date.today().isoformat()}
    r = await disburse(api, number, manager, body)
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted == {
        "loan_number": number,
        "workflow_id": f"disbursement-{number}-1",
        "attempt": 1,
        "status": "in_progress",
        "via": "loan_approval",
    }
    # LoanApproval handed over and ended; the applicant can no longer withdraw
    approval: LoanApprovalState = await loan.approval.result()
    assert approval.disbursement_workflow_id == accepted["workflow_id"]
    assert (await finished(temporal_client, accepted["workflow_id"])).status == "completed"
    listed = await api.get(f"/v1/loans/{number}/disbursements", headers=manager.headers)
    assert listed.status_code == 200
    (row,) = listed.json()
    assert (row["status"], row["amount"], row["fee"], row["journal_id"]) == (
        "completed",
        "800.00",
        "10.00",
        f"{accepted['workflow_id']}:disburse",
    )
    assert row["requested_by"] == manager.username
    view = (await api.get(f"/v1/loans/{number}", headers=manager.headers)).json()
    assert view["state"] == "active"
    events = [e["event"] for e in view["trail"]]
    assert events[-3:] == ["disbursement_requested", "disbursement_started", "disbursed"]
    # a second request meets an active loan
    again = await disburse(api, number, manager, body)
    assert again.status_code == 409 and again.json()["error"] == "LoanStateConflict"
    assert await Books(kit).verified()
    await record_history(loan.approval, "loan_approval_disburse_update")


async def test_disbursing_directly_once_the_approval_has_ended(
    api: AsyncClient, temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    loan = await approved_loan(
        kit, temporal_client, worker, timeouts={"approval_validity": timedelta(seconds=1)}
    )
    await loan.approval.result()  # approved and no longer waiting for a withdrawal
    finance = await kit.staff("finance")
    r = await disburse(api, loan.inp.loan_number, finance, {})
    assert r.status_code == 202, r.text
    assert r.json()["via"] == "direct"
    assert (await finished(temporal_client, r.json()["workflow_id"])).status == "completed"
    assert (await kit.loan(loan.inp.loan_id)).state == "active"
    assert await Books(kit).verified()


async def test_two_concurrent_requests_make_one_disbursement(
    api: AsyncClient, temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    loan = await approved_loan(kit, temporal_client, worker)
    m1, m2 = await kit.staff("branch_manager"), await kit.staff("finance")
    answers = await asyncio.gather(
        disburse(api, loan.inp.loan_number, m1, {}),
        disburse(api, loan.inp.loan_number, m2, {}),
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [202, 409], [a.text for a in answers]
    (ok,) = [a for a in answers if a.status_code == 202]
    assert (await finished(temporal_client, ok.json()["workflow_id"])).status == "completed"
    assert len(await Books(kit).disbursements(loan.inp.loan_id)) == 1
    assert await Books(kit).verified()


async def test_refusals(
    api: AsyncClient, temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    manager, officer = await kit.staff("branch_manager"), await kit.staff("loan_officer")
    loan = await approved_loan(kit, temporal_client, worker)
    number = loan.inp.loan_number
    r = await disburse(api, number, officer, {})
    assert r.status_code == 403 and r.json()["error"] == "Forbidden"
    r = await disburse(api, "LN999999999", manager, {})
    assert r.status_code == 404 and r.json()["error"] == "NotFound"
    for bad in (
        {"destination": "external"},
        {"destination": "savings", "external_account": {"bank_code": "X"}},
        {"destination": "moon"},
        {"disbursed_on": "yesterday"},
        {"disbursed_on": (date.today() + timedelta(days=1)).isoformat()},  # not yet
        {"disbursed_on": (date.today() - timedelta(days=1)).isoformat()},  # before approval
    ):
        r = await disburse(api, number, manager, bad)
        assert r.status_code == 422 and r.json()["error"] == "ValidationError", bad
    # a loan still waiting for its approver
    waiting = await kit.register(
        await kit.staff("loan_officer"), loan.inp.product.code, await kit.member(), "500.00"
    )
    handle = await start(temporal_client, worker, waiting)
    assert (await send(handle, "initial_outcome")).stage == Stage.AWAITING_APPROVAL
    r = await disburse(api, waiting.loan_number, manager, {})
    assert r.status_code == 409 and r.json()["error"] == "LoanStateConflict"
    assert await Books(kit).disbursements(loan.inp.loan_id) == []


async def test_auto_disburse_product_disburses_on_approval(
    temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    loan = await approved_loan(kit, temporal_client, worker, auto_disburse=True)
    approval: LoanApprovalState = await loan.approval.result()
    child = approval.disbursement_workflow_id
    assert child == f"disbursement-{loan.inp.loan_number}-1"
    state = await finished(temporal_client, child)
    assert (state.status, state.destination) == ("completed", "savings")
    books = Books(kit)
    assert await books.balance(loan.savings_id) == 1_790_00
    (d,) = await books.disbursements(loan.inp.loan_id)
    assert (d.requested_by, d.status) == ("system", "completed")
    assert (await kit.loan(loan.inp.loan_id)).state == "active"
    assert await books.verified()
    await record_history(loan.approval, "loan_approval_auto_disburse")


async def test_a_disbursement_retried_after_a_crash_answers_the_first_202(
    api: AsyncClient, temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    """The API died after the LoanApproval accepted the disbursement, before keeping its answer:
    the retry with the same Idempotency-Key answers that disbursement (the Update's id comes from
    the key) instead of 409 LoanStateConflict; one disbursement, paid once."""
    from tests.api.test_idempotency import leave_as_crashed

    loan = await approved_loan(kit, temporal_client, worker)
    number = loan.inp.loan_number
    manager = await kit.staff("branch_manager")
    body = {"destination": "savings", "disbursed_on": date.today().isoformat()}
    headers = manager.headers | {"Idempotency-Key": uuid.uuid4().hex}
    path = f"/v1/loans/{number}/disbursements"
    first = await api.post(path, json=body, headers=headers)
    assert first.status_code == 202, first.text
    assert (await finished(temporal_client, first.json()["workflow_id"])).status == "completed"
    assert await leave_as_crashed(kit.sessions, manager.id, headers["Idempotency-Key"], 0) == 1

    again = await api.post(path, json=body, headers=headers)
    assert again.status_code == 202, again.text
    assert again.json() == first.json()
    listed = await api.get(path, headers=manager.headers)
    assert [row["status"] for row in listed.json()] == ["completed"]
    other = await disburse(api, number, manager, body)  # another key: the loan is active now
    assert other.status_code == 409 and other.json()["error"] == "LoanStateConflict"
    assert await Books(kit).verified()
