"""Reversals of posted journals: request, inbox, state and approvers' decisions.

The API never moves money: it checks the journal can be reversed (a clear 4xx and no process
otherwise), then starts the Reversal workflow, whose id is `reversal-<journal id>` so that two
requests for one journal meet the same process. A request after a rejected or expired case
starts a new run under the same id.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from temporalio.client import (
    Client,
    WorkflowHandle,
)
from temporalio.common import (
    WorkflowIDReusePolicy,
)

from activities.reversal_checks import check_reversible
from api.deps import ANY_STAFF, Principal, SessionsDep, SettingsDep, TemporalDep, require_roles
from api.errors import errors
from api.idempotency import IdempotencyKey, UpdateId
from api.processes import execute_decision, process_state
from api.update_with_start import Answered, key_digest, update_with_start
from domain.money import to_major
from schemas import search_attributes as sa
from schemas import types
from schemas.errors import BankflowError, known_code
from schemas.reversals import (
    REQUESTER_ROLES,
    DecisionInput,
    DecisionRequest,
    ReversalCreate,
    ReversalInput,
    ReversalState,
    ReversalSummary,
    ReversalView,
    Stage,
)
from schemas.settings import Settings
from workflows.reversal import DECIDE, INITIAL_OUTCOME, ReversalWorkflow

router = APIRouter(prefix="/v1", tags=["reversals"])

Requester = Annotated[Principal, Depends(require_roles(*REQUESTER_ROLES))]
Reader = Annotated[
    Principal,
    Depends(require_roles("teller", "branch_manager", "finance", "ops", "compliance_officer")),
]
Staff = Annotated[Principal, Depends(require_roles(*ANY_STAFF))]
JournalId = Annotated[types.JournalId, Path(description="e.g. movement-MV0123456789ABCDEF:post")]
WORKFLOW_PREFIX = "reversal-"


def _handle(client: Client, journal_id: str) -> WorkflowHandle[ReversalWorkflow, ReversalState]:
    return client.get_workflow_handle_for(ReversalWorkflow.run, WORKFLOW_PREFIX + journal_id)


def view(state: ReversalState) -> ReversalView:
    scale = state.scale or 0
    return ReversalView(
        reversal_id=state.reversal_id,
        journal_id=state.journal_id,
        stage=state.stage,
        kind=state.kind,
        amount=to_major(state.amount_minor, scale) if state.amount_minor is not None else None,
        currency=state.currency,
        reason_code=state.reason_code,
        reason=state.reason,
        requested_by=state.requested_by,
        checks=state.checks,
        approvers_needed=state.tier.approvers if state.tier else None,
        approver_roles=sorted(state.tier.roles) if state.tier else [],
        needs_override=state.needs_override,
        assigned_role=state.assigned_role,
        decisions=state.decisions,
        held=state.holds,
        shortfalls=state.shortfalls,
        reversal_journal_id=state.reversal_journal_id,
        cover_journal_id=state.cover_journal_id,
        notified=state.notified,
        error=state.error,
        error_detail=state.error_detail,
        expires_at=state.expires_at,
        history=state.history,
    )


def _input(
    journal_id: str, body: ReversalCreate, who: Principal, key: str, s: Settings
) -> ReversalInput:
    request_id = "RV" + key_digest(who.id, key).upper()
    return ReversalInput(
        journal_id=journal_id,
        request_id=request_id,
        reason_code=body.reason_code,
        reason=body.reason,
        requested_by_id=who.id,
        requested_by=who.username,
        tiers=s.reversal_tiers,
        override_roles=s.reversal_override_roles,
        approval_timeout=s.reversal_approval_timeout,
    )


@router.post(
    "/journals/{journal_id}/reversals",
    status_code=202,
    response_model=ReversalView,
    responses=errors(
        s404="JournalNotFound",
        s409="AlreadyReversed, PeriodClosed or LoanStateConflict",
        s422="NotReversible, AccountClosed or ValidationError",
    ),
)
async def request_reversal(
    principal: Requester,
    key: IdempotencyKey,
    journal_id: JournalId,
    body: ReversalCreate,
    response: Response,
    sessions: SessionsDep,
    settings: SettingsDep,
    client: TemporalDep,
) -> ReversalView:
    """Ask for a journal to be reversed (tellers, branch managers, finance; `Idempotency-Key`).

    202 with the case waiting for approvers, the funds the journal credited now held. A journal
    that does not exist is 404; a reversal, an already reversed journal or one in a closed
    period is 422/409; a second request for a journal under review answers with that case.
    """
    async with sessions() as session:
        _, _, refusal = await check_reversible(session, journal_id)
    if refusal is not None:
        raise refusal
    inp = _input(journal_id, body, principal, key, settings)
    location = f"/v1/journals/{journal_id}/reversals"
    response.headers["Location"] = location
    outcome = await update_with_start(
        client,
        settings,
        ReversalWorkflow.run,
        inp,
        workflow_id=WORKFLOW_PREFIX + journal_id,
        update=INITIAL_OUTCOME,
        result_type=ReversalState,
        search_attributes=sa.at_start("Reversal", Stage.VALIDATING.value, business_id=journal_id),
        summary=f"reversal of journal {journal_id}",
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    if not isinstance(outcome, Answered):
        return view(await process_state(_handle(client, journal_id), ReversalState))
    state = outcome.state
    code = known_code(state.error)
    if state.stage == Stage.REFUSED and code is not None:
        raise BankflowError(code, state.error_detail or "refused")
    return view(state)


@router.get("/journals/{journal_id}/reversals")
async def get_reversal(_: Reader, journal_id: JournalId, client: TemporalDep) -> ReversalView:
    """The latest reversal case of a journal: checks, holds, decisions, outcome and history."""
    return view(await process_state(_handle(client, journal_id), ReversalState))


@router.post(
    "/journals/{journal_id}/reversals/decisions",
    responses=errors(s409="Duplicate (a second decision by one person) or NotAwaitingDecision"),
)
async def decide_reversal(
    principal: Staff,
    journal_id: JournalId,
    body: DecisionRequest,
    client: TemporalDep,
    update: UpdateId,
) -> ReversalView:
    """Approve or reject a reversal awaiting approval. Never the requester, once per approver.

    The workflow is the authority: it checks the roles of the amount's tier, the number of
    approvers, and that an overdraft override comes from a role allowed to give it.
    """
    decision = DecisionInput(
        approve=body.approve,
        reason=body.reason,
        override_overdraft=body.override_overdraft,
        approver_id=principal.id,
        approver=principal.username,
        approver_roles=sorted(principal.roles),
    )
    state = await execute_decision(
        _handle(client, journal_id), DECIDE, decision, ReversalState, update
    )
    return view(state)


@router.get("/reversals")
async def list_reversals(
    _: Reader,
    client: TemporalDep,
    stage: Annotated[Stage | None, Query(description="e.g. awaiting_approval")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[ReversalSummary]:
    """Reversal cases, newest first; `?stage=awaiting_approval` is the approvers' inbox."""
    query = "WorkflowType = 'Reversal'"
    if stage:
        query += f" AND {sa.STAGE.name} = '{stage.value}'"
    found: list[ReversalSummary] = []
    async for wf in client.list_workflows(query, limit=limit):
        attrs = wf.typed_search_attributes
        found.append(
            ReversalSummary(
                journal_id=attrs.get(sa.BUSINESS_ID) or wf.id.removeprefix(WORKFLOW_PREFIX),
                workflow_id=wf.id,
                status=wf.status.name.lower() if wf.status else "unknown",
                stage=attrs.get(sa.STAGE),
                assigned_role=attrs.get(sa.ASSIGNED_ROLE),
                amount_minor=attrs.get(sa.AMOUNT_MINOR),
                currency=attrs.get(sa.CURRENCY),
                started_at=wf.start_time,
            )
        )
    return found
