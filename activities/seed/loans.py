"""The demo loan book: one loan brought over from the institution's previous system, so the daily
loan job, arrears and portfolio at risk have something to work on in a fresh `make run`.

Rahim Chowdhury's PERSONAL loan of 1,000.00 (12 months, accrual accounting, 6 % penalty) was
approved in the old system and disbursed 100 days before the seed runs; he has repaid nothing,
so his first installments are overdue. It is booked through the Disbursement saga's own steps
(claim, loan account and schedule, disbursement journal with the fee, activation) under the
saga's ids, as an import of a disbursed loan would be; only the approval happened elsewhere.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities import loan_book
from activities.disbursement_claim import claim
from activities.disbursements import activate, open_account, post_disbursement
from activities.loan_applications import register_application
from activities.staff import Principal
from activities.tables import Loan, Member, StaffUser
from schemas.disbursements import ClaimRequest, DisbursementInput, Step
from schemas.loans import LoanCreate

BORROWER = "rahim.chowdhury@example.org"
PRODUCT, PRINCIPAL, REPAYMENTS = "PERSONAL", "1000.00", 12
DISBURSED_DAYS_AGO = 100
IMPORT_KEY = "seed-demo-loan"


async def seed_demo_loan(session: AsyncSession, today: date) -> str | None:
    """Import the demo loan unless the borrower already has one; its number, or None."""
    member = await session.scalar(select(Member).where(Member.email == BORROWER))
    if member is None or await session.scalar(select(Loan.id).where(Loan.member_id == member.id)):
        return None
    officer = await _staff(session, "officer1")
    manager = await _staff(session, "manager1")
    disbursed_on = today - timedelta(days=DISBURSED_DAYS_AGO)
    app = await register_application(
        session,
        LoanCreate(
            member_number=member.member_number,
            product=PRODUCT,
            principal=PRINCIPAL,
            repayments=REPAYMENTS,
            purpose="stock for the shop (imported from the previous system)",
            expected_disbursement_on=disbursed_on,
        ),
        Principal(officer.id, officer.username, frozenset({"loan_officer"})),
        IMPORT_KEY,
    )
    loan = await loan_book.lock_loan(session, app.loan.loan_number)
    await loan_book.trail(
        session,
        loan,
        IMPORT_KEY,
        "imported",
        "imported",
        to_state="approved",
        reason="approved in the previous system; imported with its disbursement",
    )
    loan.state = loan.stage = "approved"
    workflow_id = f"disbursement-{loan.loan_number}-1"
    await claim(
        session,
        ClaimRequest(
            workflow_id=workflow_id,
            inp=DisbursementInput(
                loan_number=loan.loan_number,
                attempt=1,
                disbursed_on=disbursed_on,
                requested_by=manager.username,
                requested_by_id=manager.id,
                branch=app.branch,
                product=PRODUCT,
                currency=loan.currency,
                amount_minor=loan.principal_minor,
            ),
        ),
    )
    step = Step(workflow_id=workflow_id, loan_number=loan.loan_number)
    await open_account(session, step)
    await post_disbursement(session, step)
    await activate(session, step)
    return loan.loan_number


async def _staff(session: AsyncSession, username: str) -> StaffUser:
    user = await session.scalar(select(StaffUser).where(StaffUser.username == username))
    assert user is not None, f"the demo staff user {username} is seeded first"
    return user
