"""post_loan_repayment retried after its transaction committed (the answer was lost): the
retry returns what the first attempt did and applies nothing twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from activities.db import in_transaction
from activities.repayments import post_repayment
from schemas.repayments import RepaymentRequest
from tests.loans.conftest import LoanKit
from tests.loans.repayment_kit import active_loan, balance, ledger_ok, repayments_of


async def test_a_retried_activity_applies_the_repayment_once(kit: LoanKit) -> None:
    today = datetime.now(UTC).date()
    loan = await active_loan(
        kit, await kit.staff("loan_officer"), disbursed_on=today - timedelta(days=3)
    )
    savings0 = await balance(kit, loan.savings_id)
    req = RepaymentRequest(
        workflow_id=f"repayment-{loan.loan_number}-retry",
        loan_number=loan.loan_number,
        amount_minor=30_00,
        source="savings",
        value_date=today,
        at=datetime.now(UTC),
        actor="teller",
    )
    first = await in_transaction(kit.sessions, lambda s: post_repayment(s, req))
    retry = await in_transaction(kit.sessions, lambda s: post_repayment(s, req))
    assert retry == first
    assert len(await repayments_of(kit, loan.loan_id)) == 1
    assert await balance(kit, loan.savings_id) == savings0 - 30_00
    await ledger_ok(kit)
