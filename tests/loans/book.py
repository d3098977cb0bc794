"""A disbursed loan without the Disbursement workflow, for tests and benches of what comes after
it (repayments, the daily job, reversals): the same writes the saga's activities make, under the
same ids (`disbursement-<loan>-1:disburse`), in one transaction."""

from __future__ import annotations

from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from activities import loan_book
from activities.ledger import engine as ledger_engine
from activities.tables import LoanTransaction
from schemas.ledger import JournalRequest, PostingLine


async def disburse(session: AsyncSession, loan_number: str, disbursed_on: date) -> None:
    """What the Disbursement saga does to the books, in one transaction: approved, loan book
    opened, principal moved from the loan account to the member's savings, active."""
    loan = await loan_book.lock_loan(session, loan_number)
    loan.state = "approved"
    account_id = await loan_book.open_loan_book(session, loan, disbursed_on)
    savings = await loan_book.member_savings_account(session, loan.member_id, loan.currency)
    process = f"disbursement-{loan_number}-1"
    journal_id = f"{process}:disburse"
    await ledger_engine.post_journal(
        session,
        JournalRequest(
            journal_id=journal_id,
            kind="loan_disbursement",
            value_date=disbursed_on,
            process_id=process,
            postings=[
                PostingLine(
                    debit_account_id=account_id,
                    credit_account_id=savings,
                    amount_minor=loan.principal_minor,
                    currency=loan.currency,
                )
            ],
        ),
    )
    session.add(
        LoanTransaction(
            loan_id=loan.id,
            kind="disbursement",
            value_date=disbursed_on,
            amount_minor=loan.principal_minor,
            principal_minor=loan.principal_minor,
            journal_id=journal_id,
            workflow_id=process,
        )
    )
    loan.state = "active"
    loan.stage = "disbursed"
    loan.disbursed_on = disbursed_on
    await session.flush()
