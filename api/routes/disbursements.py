"""Disbursements: start the Disbursement saga for an approved loan, and list its attempts.

While the loan's LoanApproval workflow still runs (it waits after approval for a possible
withdrawal), the request goes to it as the `disburse` Update: it starts the saga as its child
and ends, so a withdrawal and a disbursement can never both happen. Once it has ended, the saga
is started directly. Either way the workflow id is `disbursement-<loan number>-<attempt>`, so
Temporal refuses a second start of one attempt, and the database's partial unique index refuses
a second attempt while one holds the loan.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.loan_applications import application, get_loan
from activities.reads.loan_statement import disbursement_views
from activities.reads.loans import disbursement_history
from api.audit import ShownMembers
from api.deps import LoanNumber, Principal, SessionsDep, SettingsDep, TemporalDep, require_roles
from api.deps import LoanReader as Reader
from api.errors import errors
from api.idempotency import IdempotencyKey, UpdateId
from api.processes import earlier_update
from schemas.disbursements import (
    DISBURSER_ROLES,
    DisbursementAccepted,
    DisbursementCreate,
    DisbursementInput,
    DisbursementView,
    DisburseRequest,
    disbursement_attempt,
    disbursement_workflow_id,
)
from schemas.errors import BankflowError, ErrorCode, known_code
from schemas.loans import Actor, LoanApprovalState
from schemas.settings import Settings
from workflows.disbursement import DisbursementWorkflow
from workflows.loan_approval import DISBURSE

router = APIRouter(prefix="/v1/loans", tags=["disbursements"])
Disburser = Annotated[Principal, Depends(require_roles(*DISBURSER_ROLES))]


async def _start_input(
    sessions: SessionsDep,
    settings: Settings,
    loan_number: str,
    body: DisbursementCreate,
    by: Principal,
) -> tuple[DisbursementInput, str]:
    """The next attempt's input, and the loan's LoanApproval workflow id; 409 unless approved
    and free."""
    async with sessions() as session:
        loan = await get_loan(session, loan_number)
        app = await application(session, loan)
        if loan.state != "approved":
            raise BankflowError(ErrorCode.LOAN_STATE, f"{loan_number} is {loan.state}")
        history = await disbursement_history(session, loan.id)
        if history.holder is not None:
            raise BankflowError(
                ErrorCode.LOAN_STATE, f"{loan_number} is disbursed by {history.holder}"
            )
    approved_on = history.approved_at
    today = datetime.now(UTC).date()
    disbursed_on = body.disbursed_on or today
    # As Fineract: money is not lent before the loan was approved, nor on a day still to come.
    if disbursed_on > today:
        raise BankflowError(ErrorCode.VALIDATION, f"disbursed_on {disbursed_on} is in the future")
    if approved_on is not None and disbursed_on < approved_on.date():
        raise BankflowError(
            ErrorCode.VALIDATION,
            f"disbursed_on {disbursed_on} is before the approval on {approved_on.date()}",
        )
    inp = DisbursementInput(
        loan_number=loan_number,
        attempt=history.attempts + 1,
        destination=body.destination,
        external_account=body.external_account,
        disbursed_on=disbursed_on,
        requested_by=by.username,
        requested_by_id=by.id,
        branch=app.branch,
        product=app.product.code,
        currency=loan.currency,
        amount_minor=loan.principal_minor,
        payout_timeout=settings.payout_timeout,
        payout_attempt_timeout=settings.payout_attempt_timeout,
    )
    return inp, loan.workflow_id


async def _via_approval(
    client: Client, approval_id: str, req: DisburseRequest, update: str | None
) -> bool:
    """Ask the running LoanApproval to disburse; False when it has already ended."""
    handle = client.get_workflow_handle(approval_id)
    try:
        await handle.execute_update(DISBURSE, req, id=update, result_type=LoanApprovalState)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        code = known_code(cause.type) if isinstance(cause, ApplicationError) else None
        if code is None or not isinstance(cause, ApplicationError):
            raise
        raise BankflowError(code, cause.message) from exc
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return False
    return True


@router.post(
    "/{loan_number}/disbursements",
    status_code=202,
    responses=errors(s409="LoanStateConflict: not approved, or already being disbursed"),
)
async def disburse_loan(
    principal: Disburser,
    _key: IdempotencyKey,
    loan_number: LoanNumber,
    body: DisbursementCreate,
    response: Response,
    sessions: SessionsDep,
    settings: SettingsDep,
    client: TemporalDep,
    update: UpdateId,
) -> DisbursementAccepted:
    """Disburse an approved loan (branch managers and finance; needs an `Idempotency-Key`):
    to the member's savings account, or to an external bank account through the payment rail.
    202 with the Disbursement workflow id: the saga runs on; follow it with
    `GET /v1/loans/{loan_number}/disbursements`. A loan not approved, or already being
    disbursed, is 409 LoanStateConflict; an unknown loan 404; a bad body 422."""
    response.headers["Location"] = f"/v1/loans/{loan_number}/disbursements"
    async with sessions() as session:
        approval_id = (await get_loan(session, loan_number)).workflow_id
    earlier = await earlier_update(
        client, approval_id, update, LoanApprovalState, settings.api_wait_timeout
    )
    if earlier is not None and earlier.disbursement_workflow_id is not None:
        # A retry of a request that died after the LoanApproval took it: its first answer.
        return DisbursementAccepted(
            loan_number=loan_number,
            workflow_id=earlier.disbursement_workflow_id,
            attempt=disbursement_attempt(earlier.disbursement_workflow_id),
            via="loan_approval",
        )
    inp, approval_id = await _start_input(sessions, settings, loan_number, body, principal)
    actor = Actor(user_id=principal.id, username=principal.username, roles=sorted(principal.roles))
    workflow_id = disbursement_workflow_id(loan_number, inp.attempt)
    via = "loan_approval"
    request = DisburseRequest(actor=actor, disbursement=inp)
    if not await _via_approval(client, approval_id, request, update):
        via = "direct"
        try:
            await client.start_workflow(
                DisbursementWorkflow.run,
                inp,
                id=workflow_id,
                task_queue=settings.interactive_task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"{loan_number}: disbursement attempt {inp.attempt}",
            )
        except WorkflowAlreadyStartedError as exc:
            raise BankflowError(
                ErrorCode.LOAN_STATE, f"{loan_number} is already being disbursed by {workflow_id}"
            ) from exc
    return DisbursementAccepted(
        loan_number=loan_number, workflow_id=workflow_id, attempt=inp.attempt, via=via
    )


@router.get("/{loan_number}/disbursements")
async def list_disbursements(
    _: Reader, loan_number: LoanNumber, sessions: SessionsDep, shown: ShownMembers
) -> list[DisbursementView]:
    """Every disbursement attempt of the loan, oldest first: status (in_progress, completed,
    compensated, reversed), amounts, destination, the journals it posted (disbursement, payout,
    compensation) and the one that undid it, the rail's reference and why a compensated attempt
    failed. Audited (an external account names its holder)."""
    async with sessions() as session:
        views = await disbursement_views(session, loan_number)
        shown.show((await application(session, await get_loan(session, loan_number))).member_number)
        return views
