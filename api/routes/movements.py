"""Money movements: deposit, withdrawal, transfer, and supervisors' decisions on large ones.

The API never moves money itself: it validates, starts a MoneyMovement workflow and reports what
the workflow did. A movement's id derives from the caller and its Idempotency-Key, so even a
retry that outlives the idempotency record meets the same workflow instead of paying twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import JSONResponse
from temporalio.client import (
    Client,
    WorkflowHandle,
)

from activities.movements import resolve_movement
from activities.reads.books import reversed_by
from api.deps import DirectDep, Principal, SessionsDep, SettingsDep, TemporalDep, require_roles
from api.errors import error_response, errors
from api.idempotency import IdempotencyKey, UpdateId
from api.processes import describe, execute_decision, process_state
from api.update_with_start import Finished, Pending, key_digest, update_with_start
from domain.money import floor_minor, to_major
from schemas import search_attributes as sa
from schemas import types
from schemas.errors import ErrorCode, known_code
from schemas.movements import (
    REQUESTER_ROLES,
    DecisionInput,
    DecisionRequest,
    MovementCreate,
    MovementInput,
    MovementState,
    MovementSummary,
    MovementView,
    Stage,
)
from workflows.money_movement import DECIDE, INITIAL_OUTCOME, MoneyMovementWorkflow

router = APIRouter(prefix="/v1/movements", tags=["movements"])

Requester = Annotated[Principal, Depends(require_roles(*REQUESTER_ROLES))]
Supervisor = Annotated[Principal, Depends(require_roles("branch_manager"))]
Reader = Annotated[Principal, Depends(require_roles("teller", "branch_manager", "ops", "finance"))]
MovementId = Annotated[types.MovementId, Path(description="e.g. MV0123456789ABCDEF")]
WORKFLOW_PREFIX = "movement-"


def movement_id(user_id: int, key: str) -> str:
    return "MV" + key_digest(user_id, key).upper()


def view(state: MovementState) -> MovementView:
    return MovementView(
        movement_id=state.movement_id,
        workflow_id=WORKFLOW_PREFIX + state.movement_id,
        kind=state.kind,
        stage=state.stage,
        amount=to_major(state.amount_minor, state.scale),
        currency=state.currency,
        from_account=state.debit_account if state.kind != "deposit" else None,
        to_account=state.credit_account if state.kind != "withdrawal" else None,
        needs_approval=state.needs_approval,
        requested_by=state.requested_by,
        assigned_role=state.assigned_role,
        decided_by=state.decided_by,
        decision_reason=state.decision_reason,
        journal_id=state.journal_id,
        error=state.error,
        error_detail=state.error_detail,
        expires_at=state.expires_at,
        history=state.history,
    )


def respond(state: MovementState, response: Response) -> MovementView | JSONResponse:
    """201 posted, 202 waiting for a supervisor, or the ledger's refusal in the error shape."""
    location = {"Location": f"/v1/movements/{state.movement_id}"}
    if state.stage == Stage.DECLINED:
        code = known_code(state.error) or ErrorCode.VALIDATION
        return error_response(code, state.error_detail or "declined", 422, location)
    response.headers.update(location)
    response.status_code = 201 if state.stage == Stage.COMPLETED else 202
    return view(state)


def _handle(client: Client, mid: str) -> WorkflowHandle[MoneyMovementWorkflow, MovementState]:
    return client.get_workflow_handle_for(MoneyMovementWorkflow.run, WORKFLOW_PREFIX + mid)


@router.post(
    "",
    status_code=201,
    response_model=MovementView,
    responses={
        202: {"model": MovementView, "description": "held for a branch manager's decision"},
        **errors(
            s404="AccountNotFound",
            s422="refused by the ledger (InsufficientFunds, InvalidAmount, CurrencyMismatch, "
            "AccountClosed, ...) or ValidationError",
        ),
    },
)
async def create_movement(
    principal: Requester,
    key: IdempotencyKey,
    body: MovementCreate,
    response: Response,
    direct: DirectDep,
    settings: SettingsDep,
    client: TemporalDep,
) -> MovementView | JSONResponse:
    """Deposit, withdraw or transfer. Tellers and branch managers; needs an `Idempotency-Key`.

    Answers 201 when posted; 202 when the amount is above the approval threshold and the funds
    are held for a branch manager's decision; 422 with the ledger's reason (for example
    `InsufficientFunds`) when refused.
    """
    resolved = await resolve_movement(direct, body)
    mid = movement_id(principal.id, key)
    inp = MovementInput(
        movement_id=mid,
        kind=body.kind,
        debit_account_id=resolved.debit.id,
        credit_account_id=resolved.credit.id,
        debit_account=resolved.debit.code,
        credit_account=resolved.credit.code,
        amount_minor=resolved.amount_minor,
        currency=body.currency,
        scale=resolved.scale,
        narrative=body.narrative,
        value_date=datetime.now(UTC).date(),
        branch=resolved.branch,
        requested_by_id=principal.id,
        requested_by=principal.username,
        # Exact for any currency: "500.005" is a threshold of 500.00 for USD and 500 for JPY.
        approval_threshold_minor=floor_minor(settings.approval_threshold, resolved.scale),
        approval_timeout=settings.approval_timeout,
    )
    outcome = await update_with_start(
        client,
        settings,
        MoneyMovementWorkflow.run,
        inp,
        workflow_id=WORKFLOW_PREFIX + mid,
        update=INITIAL_OUTCOME,
        result_type=MovementState,
        search_attributes=sa.at_start(
            "MoneyMovement",
            Stage.POSTING.value,
            branch=resolved.branch,
            amount_minor=resolved.amount_minor,
            currency=body.currency,
            business_id=mid,
        ),
        summary=f"{body.kind} of {to_major(resolved.amount_minor, resolved.scale)} {body.currency}",
    )
    if isinstance(outcome, Finished):
        state = await process_state(_handle(client, mid), MovementState)
    elif isinstance(outcome, Pending):
        # Started but not yet answered (no worker free): 202, and the caller polls Location.
        # Not started at all: 503, which the idempotency layer does not store, so a retry with
        # the same key starts it instead of replaying a promise nobody keeps.
        await describe(_handle(client, mid), missing=ErrorCode.PROCESS_UNAVAILABLE)
        response.headers["Location"] = f"/v1/movements/{mid}"
        response.status_code = 202
        return view(MovementState.initial(inp))
    else:
        state = outcome.state
    return respond(state, response)


@router.get("/{movement_id}")
async def get_movement(
    _: Reader, movement_id: MovementId, client: TemporalDep, sessions: SessionsDep
) -> MovementView:
    """A movement's stage, decision and history from its workflow, and the reversal of its
    journal from the ledger (a reversal is a process of its own, after the movement ended)."""
    state = await process_state(_handle(client, movement_id), MovementState)
    if state.journal_id is None:
        return view(state)
    async with sessions() as session:
        reversal = await reversed_by(session, state.journal_id)
    return view(state).model_copy(update={"reversed_by_journal_id": reversal})


@router.get("")
async def list_movements(
    _: Reader,
    client: TemporalDep,
    stage: Annotated[Stage | None, Query(description="e.g. awaiting_approval")] = None,
    branch: types.BranchCode | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[MovementSummary]:
    """Movements, newest first; `?stage=awaiting_approval` is the supervisors' inbox."""
    query = "WorkflowType = 'MoneyMovement'"
    if stage:
        query += f" AND {sa.STAGE.name} = '{stage.value}'"
    if branch:
        query += f" AND {sa.BRANCH.name} = '{branch}'"
    found: list[MovementSummary] = []
    async for wf in client.list_workflows(query, limit=limit):
        attrs = wf.typed_search_attributes
        mid = attrs.get(sa.BUSINESS_ID) or wf.id.removeprefix(WORKFLOW_PREFIX)
        found.append(
            MovementSummary(
                movement_id=mid,
                workflow_id=wf.id,
                status=wf.status.name.lower() if wf.status else "unknown",
                stage=attrs.get(sa.STAGE),
                amount_minor=attrs.get(sa.AMOUNT_MINOR),
                currency=attrs.get(sa.CURRENCY),
                branch=attrs.get(sa.BRANCH),
                started_at=wf.start_time,
            )
        )
    return found


@router.post("/{movement_id}/decisions", responses=errors(s409="NotAwaitingDecision"))
async def decide_movement(
    principal: Supervisor,
    movement_id: MovementId,
    body: DecisionRequest,
    client: TemporalDep,
    update: UpdateId,
) -> MovementView:
    """Approve or reject a movement awaiting approval. Branch managers only; never the requester.

    The workflow is the authority on four-eyes: it refuses the requester, a role that may not
    decide, and a movement no longer awaiting a decision, before anything is written.
    """
    handle = _handle(client, movement_id)
    decision = DecisionInput(
        approve=body.approve,
        reason=body.reason,
        approver_id=principal.id,
        approver=principal.username,
        approver_roles=sorted(principal.roles),
    )
    state = await execute_decision(handle, DECIDE, decision, MovementState, update)
    return view(state)
