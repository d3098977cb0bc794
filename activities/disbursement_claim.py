"""Step 1 of the Disbursement saga: claim the loan for this attempt.

The loan row lock serialises two claims of one loan; the partial unique index
uq_disbursements_loan_holding refuses a second holding attempt even if a caller got around the
lock. A retry of the same workflow finds its own row and continues with it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from activities import loan_book
from activities.disbursement_book import disbursement_fee
from activities.loan_book import trail
from activities.loans import free_savings
from activities.tables import HOLDING_STATUSES, Disbursement, Loan, LoanGuarantor, Member
from schemas.disbursements import ClaimRequest, DisbursementPlan, Lien
from schemas.errors import BankflowError, ErrorCode


async def liens_of(session: AsyncSession, loan: Loan, *, check: bool = True) -> list[Lien]:
    """Each accepted guarantee; `check`: the guarantor's free savings must still cover it (not
    once our own liens may be placed: a retry would count them against the guarantee)."""
    rows = await session.execute(
        select(LoanGuarantor, Member.member_number)
        .join(Member, Member.id == LoanGuarantor.member_id)
        .where(LoanGuarantor.loan_id == loan.id, LoanGuarantor.status == "accepted")
        .order_by(Member.member_number)
    )
    liens = []
    for g, number in rows:
        free = await free_savings(session, g.member_id, loan.currency, loan.id) if check else 0
        if check and free < g.amount_minor:
            raise BankflowError(
                ErrorCode.GUARANTEE_NOT_MET,
                f"guarantor {number} has {free} minor units free for a guarantee of "
                f"{g.amount_minor}",
            )
        account = await loan_book.member_savings_account(session, g.member_id, loan.currency)
        liens.append(Lien(member_number=number, account_id=account, amount_minor=g.amount_minor))
    return liens


async def _plan(session: AsyncSession, loan: Loan, row: Disbursement) -> DisbursementPlan:
    return DisbursementPlan(
        loan_id=loan.id,
        member_id=loan.member_id,
        currency=loan.currency,
        scale=loan_book.product_of(loan).scale,
        amount_minor=row.amount_minor,
        fee_minor=row.fee_minor,
        savings_account_id=row.savings_account_id,
        liens=await liens_of(session, loan, check=False),
    )


async def claim(session: AsyncSession, req: ClaimRequest) -> DisbursementPlan:
    """Step 1: the loan must be approved and free; insert this attempt's row (in_progress)."""
    inp = req.inp
    loan = await loan_book.lock_loan(session, inp.loan_number)
    mine = await session.scalar(
        select(Disbursement).where(Disbursement.workflow_id == req.workflow_id)
    )
    if mine is not None:  # a retry, or a crash after the commit: continue with our own row
        if mine.status != "in_progress":
            raise BankflowError(ErrorCode.LOAN_STATE, f"{req.workflow_id} is {mine.status}")
        return await _plan(session, loan, mine)
    if loan.state != "approved":
        raise BankflowError(
            ErrorCode.LOAN_STATE, f"{loan.loan_number} is {loan.state}, not approved"
        )
    holder = await session.scalar(
        select(Disbursement.workflow_id).where(
            Disbursement.loan_id == loan.id, Disbursement.status.in_(HOLDING_STATUSES)
        )
    )
    if holder is not None:
        raise BankflowError(ErrorCode.LOAN_STATE, f"{loan.loan_number} is disbursed by {holder}")
    product = loan_book.product_of(loan)
    fee = disbursement_fee(product, loan.principal_minor)
    savings = None
    if inp.destination == "savings" or fee:
        savings = await loan_book.member_savings_account(session, loan.member_id, loan.currency)
    liens = await liens_of(session, loan)
    row = Disbursement(
        loan_id=loan.id,
        attempt=inp.attempt,
        workflow_id=req.workflow_id,
        status="in_progress",
        destination=inp.destination,
        savings_account_id=savings,
        external_account=inp.external_account.model_dump() if inp.external_account else None,
        amount_minor=loan.principal_minor,
        fee_minor=fee,
        disbursed_on=inp.disbursed_on,
        requested_by=inp.requested_by,
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        # uq_disbursements_loan_holding or the attempt number: another attempt got there first.
        raise BankflowError(
            ErrorCode.LOAN_STATE, f"{loan.loan_number} is already being disbursed"
        ) from exc
    loan.stage = "disbursing"
    loan.current_details = f"{loan.loan_number}: disbursing (attempt {inp.attempt})"
    await trail(
        session,
        loan,
        req.workflow_id,
        "claimed",
        "disbursement_started",
        actor=inp.requested_by,
        actor_id=inp.requested_by_id,
        data={"attempt": inp.attempt, "destination": inp.destination},
    )
    return DisbursementPlan(
        loan_id=loan.id,
        member_id=loan.member_id,
        currency=loan.currency,
        scale=product.scale,
        amount_minor=row.amount_minor,
        fee_minor=fee,
        savings_account_id=savings,
        liens=liens,
    )
