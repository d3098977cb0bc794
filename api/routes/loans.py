"""Loan applications: apply, read, decide, amend, withdraw, and record guarantors' answers.

The application row is written first (keyed on the caller and the Idempotency-Key), then the
LoanApproval workflow `loan-<loan number>` is started by update-with-start; a retry meets the same
loan and the same workflow. Decisions, amendments and withdrawals are Workflow Updates: the
workflow's validator is the authority on who may decide, and its refusals come back as errors.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from temporalio.client import (
    Client,
    WorkflowHandle,
)

from activities.db import in_transaction
from activities.loan_applications import (
    Application,
    application,
    get_loan,
    loan_view,
    member_ids_of,
    register_application,
)
from activities.loan_products import minor
from api.audit import ShownMembers
from api.deps import (
    APPROVER_ROLES,
    LoanNumber,
    Principal,
    SessionsDep,
    SettingsDep,
    TemporalDep,
    require_roles,
)
from api.deps import LoanReader as Reader
from api.errors import errors
from api.idempotency import IdempotencyKey, UpdateId
from api.processes import execute_decision
from api.update_with_start import Pending, update_with_start
from domain.money import to_major
from schemas import search_attributes as sa
from schemas import types
from schemas.loans import (
    REQUESTER_ROLES,
    Actor,
    Amendment,
    AmendRequest,
    ConsentRequest,
    Decision,
    DecisionRequest,
    GuarantorAnswer,
    LoanApprovalState,
    LoanCreate,
    LoanInput,
    LoanView,
    Stage,
    Withdrawal,
    WithdrawRequest,
)
from schemas.settings import Settings
from workflows.loan_approval import (
    AMEND,
    DECIDE,
    GUARANTOR_CONSENT,
    INITIAL_OUTCOME,
    WITHDRAW,
    LoanApprovalWorkflow,
)

router = APIRouter(prefix="/v1/loans", tags=["loans"])

Requester = Annotated[Principal, Depends(require_roles(*REQUESTER_ROLES))]
Approver = Annotated[Principal, Depends(require_roles(*APPROVER_ROLES))]
MemberNumber = Annotated[types.MemberNumber, Path(description="the guarantor, e.g. M0000042")]


def workflow_input(app: Application, settings: Settings, principal: Principal) -> LoanInput:
    loan = app.loan
    return LoanInput(
        loan_id=loan.id,
        loan_number=loan.loan_number,
        member_id=loan.member_id,
        member_number=app.member_number,
        branch=app.branch,
        product=app.product,
        principal_minor=loan.requested_principal_minor,
        repayments=loan.requested_repayments,
        purpose=loan.purpose,
        expected_disbursement_on=loan.expected_disbursement_on,
        guarantors=app.guarantors,
        entered_by_id=loan.entered_by_id,
        entered_by=principal.username,
        guarantor_timeout=settings.loan_guarantor_timeout,
        reminder_after=settings.loan_reminder_after,
        escalate_after=settings.loan_escalate_after,
        return_timeout=settings.loan_return_timeout,
        approval_validity=settings.loan_approval_validity,
    )


def _handle(
    client: Client, loan_number: str
) -> WorkflowHandle[LoanApprovalWorkflow, LoanApprovalState]:
    return client.get_workflow_handle_for(LoanApprovalWorkflow.run, f"loan-{loan_number}")


async def _view(sessions: SessionsDep, loan_number: str) -> LoanView:
    async with sessions() as session:
        return await loan_view(session, loan_number)


async def _actor(sessions: SessionsDep, principal: Principal) -> Actor:
    async with sessions() as session:
        member_ids = await member_ids_of(session, principal.id)
    return Actor(
        user_id=principal.id,
        username=principal.username,
        roles=sorted(principal.roles),
        member_ids=member_ids,
    )


@router.post(
    "",
    status_code=201,
    responses={
        202: {"model": LoanView, "description": "started; the eligibility check is still running"},
        **errors(
            s404="NotFound: no such member or product",
            s422="InvalidAmount, terms outside the product, or ValidationError",
        ),
    },
)
async def apply_for_loan(
    principal: Requester,
    key: IdempotencyKey,
    body: LoanCreate,
    response: Response,
    sessions: SessionsDep,
    settings: SettingsDep,
    client: TemporalDep,
) -> LoanView:
    """Enter a member's loan application (loan officers, tellers, branch managers); needs an
    `Idempotency-Key`. Starts LoanApproval and answers once eligibility is checked: 201 with the
    loan waiting for guarantors or approvers, or already rejected with the reasons. An unknown
    member or product is 404; terms outside the product are 422; nothing is written then."""
    app = await in_transaction(
        sessions, lambda session: register_application(session, body, principal, key)
    )
    inp = workflow_input(app, settings, principal)
    response.headers["Location"] = f"/v1/loans/{inp.loan_number}"
    outcome = await update_with_start(
        client,
        settings,
        LoanApprovalWorkflow.run,
        inp,
        workflow_id=app.loan.workflow_id,
        update=INITIAL_OUTCOME,
        result_type=LoanApprovalState,
        search_attributes=sa.at_start(
            "LoanApproval",
            Stage.CHECKING_ELIGIBILITY.value,
            branch=app.branch,
            product=app.product.code,
            amount_minor=inp.principal_minor,
            currency=app.product.currency,
            business_id=inp.loan_number,
        ),
        summary=f"{inp.loan_number}: {to_major(inp.principal_minor, app.product.scale)} "
        f"{app.product.currency} {app.product.name}",
    )
    if isinstance(outcome, Pending):
        # Started but not yet answered (no worker free): 202 and the caller polls Location.
        response.status_code = 202
    # Answered, or already finished (a retry long after): the loan's record is the answer.
    return await _view(sessions, inp.loan_number)


@router.get("/{loan_number}")
async def get_loan_application(
    _: Reader, loan_number: LoanNumber, sessions: SessionsDep, shown: ShownMembers
) -> LoanView:
    """A loan's terms, schedule for the current terms, state, what it waits for, and its trail
    (who did what, when and why). Audited, with the applicant and the guarantors."""
    view = await _view(sessions, loan_number)
    shown.show(view.member_number, *(g.member_number for g in view.guarantors))
    return view


@router.post(
    "/{loan_number}/decisions",
    responses=errors(s409="AlreadyVoted or NotAwaitingDecision"),
)
async def decide_loan(
    principal: Approver,
    loan_number: LoanNumber,
    body: DecisionRequest,
    sessions: SessionsDep,
    client: TemporalDep,
    update: UpdateId,
) -> LoanView:
    """Approve (optionally with a lower `principal` or another number of `repayments`), reject
    or return for changes. The workflow refuses a role not allowed at the current level
    (403 Forbidden), the staff user who entered the application, the applicant or a guarantor
    (403 FourEyesViolation), a second vote (409 AlreadyVoted), and a loan not waiting for a
    decision (409 NotAwaitingDecision)."""
    async with sessions() as session:
        scale = (await application(session, await get_loan(session, loan_number))).product.scale
    decision = Decision(
        action=body.action,
        reason=body.reason,
        principal_minor=minor(body.principal, scale, "principal") if body.principal else None,
        repayments=body.repayments,
        actor=await _actor(sessions, principal),
    )
    await execute_decision(
        _handle(client, loan_number), DECIDE, decision, LoanApprovalState, update
    )
    return await _view(sessions, loan_number)


@router.post("/{loan_number}/amendments", responses=errors(s409="NotAwaitingDecision"))
async def amend_loan(
    principal: Requester,
    loan_number: LoanNumber,
    body: AmendRequest,
    sessions: SessionsDep,
    client: TemporalDep,
    update: UpdateId,
) -> LoanView:
    """The applicant's changes to an application returned for changes; approval restarts."""
    async with sessions() as session:
        scale = (await application(session, await get_loan(session, loan_number))).product.scale
    amendment = Amendment(
        principal_minor=minor(body.principal, scale, "principal") if body.principal else None,
        repayments=body.repayments,
        purpose=body.purpose,
        reason=body.reason,
        actor=await _actor(sessions, principal),
    )
    await execute_decision(
        _handle(client, loan_number), AMEND, amendment, LoanApprovalState, update
    )
    return await _view(sessions, loan_number)


@router.post("/{loan_number}/withdrawal", responses=errors(s409="NotAwaitingDecision"))
async def withdraw_loan(
    principal: Requester,
    loan_number: LoanNumber,
    body: WithdrawRequest,
    sessions: SessionsDep,
    client: TemporalDep,
    update: UpdateId,
) -> LoanView:
    """The applicant withdraws the application (any time before disbursement)."""
    async with sessions() as session:
        await get_loan(session, loan_number)
    withdrawal = Withdrawal(reason=body.reason, actor=await _actor(sessions, principal))
    await execute_decision(
        _handle(client, loan_number), WITHDRAW, withdrawal, LoanApprovalState, update
    )
    return await _view(sessions, loan_number)


@router.post(
    "/{loan_number}/guarantors/{member_number}/consent",
    responses=errors(s409="NotAwaitingDecision: not waiting for this guarantor"),
)
async def record_guarantor_consent(
    principal: Requester,
    loan_number: LoanNumber,
    member_number: MemberNumber,
    body: ConsentRequest,
    sessions: SessionsDep,
    client: TemporalDep,
    update: UpdateId,
) -> LoanView:
    """Record a guarantor's answer (staff who saw the guarantor); answers once the workflow has
    acted on it. An acceptance counts only if the guarantor's free savings cover the guarantee.
    The workflow refuses the staff user who entered the application and the applicant (403
    FourEyesViolation), a member who does not guarantee the loan (404), and a loan not waiting
    for this guarantor (409 NotAwaitingDecision)."""
    async with sessions() as session:
        await get_loan(session, loan_number)
    actor = await _actor(sessions, principal)
    answer = GuarantorAnswer(
        member_number=member_number,
        accept=body.accept,
        note=body.note,
        recorded_by_id=actor.user_id,
        recorded_by=actor.username,
        recorded_by_roles=actor.roles,
        recorded_by_member_ids=actor.member_ids,
    )
    handle = _handle(client, loan_number)
    await execute_decision(handle, GUARANTOR_CONSENT, answer, LoanApprovalState, update)
    return await _view(sessions, loan_number)
