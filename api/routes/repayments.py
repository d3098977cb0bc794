"""Loan repayments, the payoff quote and the loan statement.

A repayment starts a LoanRepayment workflow by update-with-start and answers with what it did.
Its id carries the loan number and a digest of the caller and the Idempotency-Key, so a retry
that outlives the idempotency record meets the same workflow instead of paying twice.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse
from temporalio.client import (
    Client,
    WorkflowHandle,
)

from activities import loan_book
from activities.audit_trail import loan_member
from activities.reads.loan_statement import payoff_quote, statement
from activities.reads.loans import loan_and_branch
from api.audit import ShownMembers
from api.deps import LoanNumber, Principal, SessionsDep, SettingsDep, TemporalDep, require_roles
from api.deps import LoanReader as Reader
from api.errors import STATUS, error_response, errors
from api.idempotency import IdempotencyKey
from api.processes import describe, process_state
from api.update_with_start import Finished, Pending, key_digest, update_with_start
from domain.money import AmountError, to_major, to_minor
from schemas import search_attributes as sa
from schemas import types
from schemas.errors import BankflowError, ErrorCode, known_code
from schemas.repayments import (
    REPAYMENT_ROLES,
    PayoffQuoteView,
    PortionView,
    RepaymentCreate,
    RepaymentInput,
    RepaymentState,
    RepaymentView,
    StatementView,
)
from workflows.repayment import OUTCOME, LoanRepaymentWorkflow

router = APIRouter(prefix="/v1/loans", tags=["loan repayments"])

Payer = Annotated[Principal, Depends(require_roles(*REPAYMENT_ROLES))]


def workflow_id(loan_number: str, user_id: int, key: str) -> str:
    return f"repayment-{loan_number}-{key_digest(user_id, key)}"


def today() -> date:
    return datetime.now(UTC).date()


async def repayment_input(
    sessions: SessionsDep, loan_number: str, body: RepaymentCreate, principal: Principal
) -> RepaymentInput:
    """The loan (404 if unknown) and the amount in its currency; the workflow checks the rest
    under the loan lock."""
    async with sessions() as session:
        loan, branch = await loan_and_branch(session, loan_number)
    product = loan_book.product_of(loan)
    try:
        amount_minor = to_minor(body.amount, product.scale)
    except AmountError as exc:
        raise BankflowError(ErrorCode.INVALID_AMOUNT, f"amount: {exc}") from exc
    value_date = body.value_date or today()
    if value_date > today():
        raise BankflowError(ErrorCode.VALIDATION, f"value date {value_date} is in the future")
    return RepaymentInput(
        loan_number=loan.loan_number,
        loan_id=loan.id,
        member_id=loan.member_id,
        branch=branch,
        product=product.code,
        currency=loan.currency,
        scale=product.scale,
        amount_minor=amount_minor,
        source=body.source,
        value_date=value_date,
        requested_by=principal.username,
        requested_by_id=principal.id,
    )


def view(state: RepaymentState) -> RepaymentView:
    r = state.result
    assert r is not None

    def m(minor: int) -> str:
        return to_major(minor, r.scale)

    return RepaymentView(
        workflow_id=state.workflow_id,
        loan_number=r.loan_number,
        journal_id=r.journal_id,
        value_date=r.value_date,
        currency=r.currency,
        requested=m(r.requested_minor or r.amount_minor),
        amount=m(r.amount_minor),
        not_taken=m(r.not_taken_minor),
        penalty=m(r.penalty_minor),
        fee=m(r.fee_minor),
        interest=m(r.interest_minor),
        principal=m(r.principal_minor),
        overpayment=m(r.overpayment_minor),
        interest_waived=m(sum(cut for _, cut in r.waived)),
        interest_refunded=m(sum(back for _, back in r.refunded)),
        installments=[
            PortionView(
                installment=p.number,
                penalty=m(p.penalty_minor),
                fee=m(p.fee_minor),
                interest=m(p.interest_minor),
                principal=m(p.principal_minor),
            )
            for p in r.portions
        ],
        loan_state=r.state,
        closed=r.closed,
        outstanding=m(r.outstanding_minor),
    )


def respond(state: RepaymentState) -> RepaymentView | JSONResponse:
    """The allocation (201), or the refusal in the error shape with its own status."""
    if state.result is None:
        code = known_code(state.error) or ErrorCode.VALIDATION
        return error_response(code, state.error_detail or "refused", STATUS.get(code, 422))
    return view(state)


def _handle(client: Client, wid: str) -> WorkflowHandle[LoanRepaymentWorkflow, RepaymentState]:
    return client.get_workflow_handle_for(LoanRepaymentWorkflow.run, wid)


@router.post(
    "/{loan_number}/repayments",
    status_code=201,
    response_model=RepaymentView,
    responses=errors(
        s404="NotFound: no such loan",
        s409="LoanStateConflict: the loan is not active",
        s422="bad amount or value date, or InsufficientFunds in savings",
    ),
)
async def repay_loan(
    principal: Payer,
    key: IdempotencyKey,
    loan_number: LoanNumber,
    body: RepaymentCreate,
    response: Response,
    sessions: SessionsDep,
    settings: SettingsDep,
    client: TemporalDep,
) -> RepaymentView | JSONResponse:
    """Repay an active loan from the member's savings (`source: savings`) or in cash at a teller
    (`source: cash`). Tellers, loan officers and branch managers; needs an `Idempotency-Key`.

    The amount pays penalties, fees, interest, then principal: overdue installments oldest
    first, then the current one, then in advance. An amount reaching the payoff quote closes
    the loan (`closed_obligations_met`) and releases the guarantors' liens. From savings only
    the payoff is taken and the answer's `not_taken` says how much of the amount was left; only
    cash received beyond the payoff makes the loan `overpaid` (the excess goes to savings).
    Answers 201 with the split per component and per installment. `value_date` may not be in
    the future, nor before the disbursement or the loan's latest repayment (422)."""
    inp = await repayment_input(sessions, loan_number, body, principal)
    wid = workflow_id(loan_number, principal.id, key)
    outcome = await update_with_start(
        client,
        settings,
        LoanRepaymentWorkflow.run,
        inp,
        workflow_id=wid,
        update=OUTCOME,
        result_type=RepaymentState,
        search_attributes=sa.at_start(
            "LoanRepayment",
            "posting",
            branch=inp.branch,
            product=inp.product,
            amount_minor=inp.amount_minor,
            currency=inp.currency,
            business_id=loan_number,
        ),
        summary=f"{loan_number}: repayment of {to_major(inp.amount_minor, inp.scale)} "
        f"{inp.currency} ({inp.source})",
    )
    if isinstance(outcome, Finished):  # finished long ago: its result is the answer
        state = await process_state(_handle(client, wid), RepaymentState)
    elif isinstance(outcome, Pending):
        # Started but not answered yet: 503 is not stored by the idempotency layer, so the
        # caller's retry with the same key meets this same workflow and gets its answer.
        await describe(_handle(client, wid), missing=ErrorCode.PROCESS_UNAVAILABLE)
        raise BankflowError(
            ErrorCode.PROCESS_UNAVAILABLE, f"{wid} is still posting; retry with the same key"
        )
    else:
        state = outcome.state
    return respond(state)


@router.get("/{loan_number}/payoff-quote")
async def get_payoff_quote(
    _: Reader,
    loan_number: LoanNumber,
    sessions: SessionsDep,
    shown: ShownMembers,
    on: Annotated[types.Day | None, Query(description="default today (UTC)")] = None,
) -> PayoffQuoteView:
    """The amount that closes the loan on `on`: principal, fees and penalties outstanding, and
    interest earned to that day only (the current period's cut to the days elapsed, later
    periods' waived). Audited."""
    async with sessions() as session:
        quote = await payoff_quote(session, loan_number, on or today())
        shown.show(await loan_member(session, loan_number))
    return quote


@router.get("/{loan_number}/statement")
async def get_loan_statement(
    _: Reader, loan_number: LoanNumber, sessions: SessionsDep, shown: ShownMembers
) -> StatementView:
    """The loan's header (principal, state, outstanding per component, days past due, arrears
    bucket), its schedule with paid and outstanding per installment, and its transactions
    (disbursement, repayments, penalties, accruals) with journal ids and a running principal
    balance. Audited."""
    async with sessions() as session:
        view = await statement(session, loan_number, today())
    shown.show(view.member_number)
    return view
