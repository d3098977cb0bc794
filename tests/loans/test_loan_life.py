"""One loan's whole life on the real stack, every step through the API and its workflow:
approved by LoanApproval, disbursed by the saga, repaid in part from savings, paid off in cash
at the payoff quote, closed with the guarantor's lien released. Balances are checked after
every step and the ledger verifies at the end."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from httpx import AsyncClient, Response
from temporalio.client import Client

from activities.ledger.chart import CASH, INTEREST_INCOME
from schemas.disbursements import DisbursementState
from tests.api.conftest import Staff
from tests.loans.conftest import LoanKit
from tests.loans.disbursement_kit import Books, approved_loan


async def post(api: AsyncClient, path: str, who: Staff, body: dict[str, Any]) -> Response:
    return await api.post(
        path, json=body, headers=who.headers | {"Idempotency-Key": uuid.uuid4().hex}
    )


async def test_a_loan_from_approval_to_closure(
    api: AsyncClient, temporal_client: Client, worker: str, kit: LoanKit
) -> None:
    books = Books(kit)
    loan = await approved_loan(kit, temporal_client, worker)  # 800.00, fee 10.00, 300.00 lien
    number, path = loan.inp.loan_number, f"/v1/loans/{loan.inp.loan_number}"
    manager, teller = await kit.staff("branch_manager"), await kit.staff("teller")
    fee_income = await books.fee_income()
    interest_income = await books.balance(kit.factory.chart[INTEREST_INCOME.number])
    cash = await books.balance(kit.factory.chart[CASH.number])

    # disbursement: 800.00 into savings less the 10.00 fee, a lien on the guarantor
    r = await post(api, f"{path}/disbursements", manager, {"destination": "savings"})
    assert r.status_code == 202, r.text
    saga = temporal_client.get_workflow_handle(
        r.json()["workflow_id"], result_type=DisbursementState
    )
    assert (await saga.result()).status == "completed"
    assert await books.balance(loan.savings_id) == 1_000_00 + 800_00 - 10_00
    assert await books.fee_income() == fee_income + 10_00
    (lien,) = await books.holds(saga.id)
    assert (lien.status, lien.amount_minor) == ("pending", 300_00)
    statement = (await api.get(f"{path}/statement", headers=teller.headers)).json()
    assert (statement["state"], statement["outstanding"]["principal"]) == ("active", "800.00")
    assert len(statement["schedule"]) == 12

    # a partial repayment from savings: the first installment's interest, then principal
    r = await post(api, f"{path}/repayments", teller, {"amount": "100.00", "source": "savings"})
    assert r.status_code == 201, r.text
    paid = r.json()
    assert paid["loan_state"] == "active" and paid["installments"][0]["installment"] == 1
    first_interest = paid["interest"]
    assert await books.balance(loan.savings_id) == 1_790_00 - 100_00
    assert await books.balance(kit.factory.chart[INTEREST_INCOME.number]) == interest_income + int(
        first_interest.replace(".", "")
    )

    # the payoff quote for today, paid in cash, closes the loan and releases the lien
    quote = (await api.get(f"{path}/payoff-quote", headers=teller.headers)).json()
    assert quote["on"] == date.today().isoformat()
    r = await post(api, f"{path}/repayments", teller, {"amount": quote["amount"], "source": "cash"})
    assert r.status_code == 201, r.text
    closing = r.json()
    assert (closing["loan_state"], closing["closed"], closing["outstanding"]) == (
        "closed_obligations_met",
        True,
        "0.00",
    )
    assert await books.balance(kit.factory.chart[CASH.number]) == cash - int(
        quote["amount"].replace(".", "")
    )
    (lien,) = await books.holds(saga.id)
    assert lien.status == "voided"
    assert (await books.account(loan.guarantor_savings_id)).debits_pending_minor == 0
    statement = (await api.get(f"{path}/statement", headers=teller.headers)).json()
    assert (statement["loan_number"], statement["state"]) == (number, "closed_obligations_met")
    assert statement["outstanding"]["total"] == "0.00"
    kinds = [t["kind"] for t in statement["transactions"]]
    assert kinds == ["disbursement", "repayment", "repayment"]
    refused = await post(api, f"{path}/repayments", teller, {"amount": "1.00"})
    assert refused.status_code == 409 and refused.json()["error"] == "LoanStateConflict"
    assert await books.verified()
