"""KYC: document intake, submitting a case, the case itself, decisions, and the reviewers' inbox.

The API checks roles and input; the KycReview workflow is the authority on who may decide a case
(four-eyes, the role a stage needs), and refuses before anything is written to its history.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Query, Response, UploadFile
from pydantic import ValidationError
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.accounts import get_member
from activities.db import in_transaction
from activities.kyc import member_branch, next_case_number, store_document
from activities.reads.kyc import case_by_number
from api.audit import ShownMembers
from api.deps import Principal, Session, SessionsDep, SettingsDep, TemporalDep, require_roles
from api.errors import describe_validation, errors
from api.idempotency import IdempotencyKey, UpdateId
from api.kyc_start import policy, start_options
from api.processes import earlier_update, execute_decision, process_state
from schemas import search_attributes as sa
from schemas import types
from schemas.errors import BankflowError, ErrorCode
from schemas.kyc import (
    COMPLIANCE_ROLE,
    DECIDER_ROLES,
    REVIEWER_ROLE,
    SUBMITTER_ROLES,
    DecisionInput,
    DecisionRequest,
    DocType,
    DocumentMeta,
    DocumentView,
    KycCaseSummary,
    KycInput,
    KycState,
    Resubmission,
    Stage,
)
from workflows.kyc_review import DECIDE, INITIAL_OUTCOME, RESUBMIT, KycReviewWorkflow

router = APIRouter(tags=["kyc"])

Submitter = Annotated[Principal, Depends(require_roles(*SUBMITTER_ROLES))]
Decider = Annotated[Principal, Depends(require_roles(REVIEWER_ROLE, COMPLIANCE_ROLE))]
Reader = Annotated[
    Principal,
    Depends(require_roles(*SUBMITTER_ROLES, COMPLIANCE_ROLE, "ops")),
]
MemberNumber = Annotated[types.MemberNumber, Path(description="e.g. M0000042")]
CaseNumber = Annotated[types.CaseNumber, Path(description="e.g. M0000042-1")]


@router.post(
    "/v1/members/{member_number}/kyc/documents",
    status_code=201,
    responses=errors(
        413, s422="DocumentRejected (its content is not an accepted type), or ValidationError"
    ),
)
async def upload_document(
    principal: Submitter,
    member_number: MemberNumber,
    sessions: SessionsDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="PDF, JPEG or PNG; photos JPEG or PNG")],
    doc_type: Annotated[DocType, Form()],
    number: Annotated[types.DocumentNumber | None, Form()] = None,
    issuing_country: Annotated[
        types.CountryCode | None, Form(description="ISO 3166-1 alpha-2")
    ] = None,
    issue_date: Annotated[types.Day | None, Form()] = None,
    expiry_date: Annotated[types.Day | None, Form()] = None,
) -> DocumentView:
    """Hand in one KYC document (multipart). Tellers, branch managers and KYC reviewers.

    The file type is recognised by its content (magic bytes), never by its name; files above
    `BANKFLOW_KYC_UPLOAD_MAX_BYTES` (default 10 MB) are refused with 413. A refused file stores
    nothing. National IDs, passports, driver's licences and BVN slips need their number and
    issuing country.
    """
    try:
        meta = DocumentMeta(
            doc_type=doc_type,
            number=number or None,
            issuing_country=(issuing_country or "").upper() or None,
            issue_date=issue_date,
            expiry_date=expiry_date,
        )
    except ValidationError as exc:
        raise BankflowError(ErrorCode.VALIDATION, describe_validation(exc.errors())) from exc
    # Read one byte past the limit: enough to refuse, without holding an oversized upload.
    content = await file.read(settings.kyc_upload_max_bytes + 1)
    if not content:
        raise BankflowError(ErrorCode.DOCUMENT_REJECTED, "the file is empty")
    return await in_transaction(
        sessions,
        lambda s: store_document(
            s,
            member_number,
            meta,
            content,
            max_bytes=settings.kyc_upload_max_bytes,
            uploaded_by=principal.username,
        ),
    )


@router.post(
    "/v1/members/{member_number}/kyc/submit",
    status_code=201,
    responses={
        202: {"model": KycState, "description": "waiting for a reviewer or the member"},
        **errors(s409="Duplicate: already verified, or a case is open"),
    },
)
async def submit_case(
    principal: Submitter,
    key: IdempotencyKey,
    member_number: MemberNumber,
    response: Response,
    sessions: SessionsDep,
    settings: SettingsDep,
    client: TemporalDep,
    update: UpdateId,
) -> KycState:
    """Open a KYC case for a member and run the automated checks. Needs an `Idempotency-Key`.

    Answers once the case is decided automatically (201) or waits for someone (202: a reviewer,
    or the member for more documents). A member has at most one open case (409 `Duplicate`).
    """

    async def prepare(session: Session) -> KycInput:
        member = await get_member(session, member_number)
        if member.kyc_status == "verified":
            raise BankflowError(ErrorCode.DUPLICATE, f"member {member_number} is already verified")
        return KycInput(
            case_number=await next_case_number(session, member),
            member_id=member.id,
            member_number=member_number,
            branch=await member_branch(session, member),
            submitted_by_id=principal.id,
            submitted_by=principal.username,
            policy=policy(settings),
        )

    inp = await in_transaction(sessions, prepare)
    options = start_options(inp, settings)
    start = WithStartWorkflowOperation(KycReviewWorkflow.run, inp, **options)
    try:
        state: KycState = await client.execute_update_with_start_workflow(
            INITIAL_OUTCOME,
            start_workflow_operation=start,
            id=update,
            result_type=KycState,
            rpc_timeout=settings.api_wait_timeout,
        )
    except WorkflowAlreadyStartedError as exc:
        # The start operation holds the same error; read it so it is not logged as unretrieved.
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await start.workflow_handle()
        earlier = await earlier_update(
            client, options["id"], update, KycState, settings.api_wait_timeout
        )
        if earlier is None:
            raise BankflowError(
                ErrorCode.DUPLICATE, f"member {member_number} already has an open KYC case"
            ) from exc
        state = earlier
    response.headers["Location"] = f"/v1/kyc/{state.case_number}"
    response.status_code = 201 if state.stage in (Stage.APPROVED, Stage.REJECTED) else 202
    return state


async def _case_handle(
    sessions: SessionsDep, client: Client, case_number: str
) -> WorkflowHandle[Any, Any]:
    async with sessions() as session:
        case = await case_by_number(session, case_number)
    if case is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no KYC case {case_number}")
    return client.get_workflow_handle(case.workflow_id, run_id=case.run_id, result_type=KycState)


@router.get("/v1/kyc/{case_number}")
async def get_case(
    _: Reader,
    case_number: CaseNumber,
    sessions: SessionsDep,
    client: TemporalDep,
    shown: ShownMembers,
) -> KycState:
    """A case's stage, check results with reasons, risk, pending decision and history; audited."""
    state = await process_state(await _case_handle(sessions, client, case_number), KycState)
    shown.show(state.member_number)
    return state


@router.post(
    "/v1/kyc/{case_number}/decisions",
    responses=errors(s409="NotAwaitingDecision"),
)
async def decide_case(
    principal: Decider,
    case_number: CaseNumber,
    body: DecisionRequest,
    sessions: SessionsDep,
    client: TemporalDep,
    update: UpdateId,
) -> KycState:
    """Approve, reject (with a `reason_code`) or `request_information` (with `documents`).

    KYC reviewers decide the review, compliance officers the second step of a high-risk case.
    The workflow refuses the submitter, the reviewer deciding compliance too, and a role the
    stage does not need (403), and a case not waiting for a decision (409).
    """
    decision = DecisionInput(
        **body.model_dump(),
        decided_by_id=principal.id,
        decided_by=principal.username,
        decided_by_roles=sorted(principal.roles),
    )
    handle = await _case_handle(sessions, client, case_number)
    return await execute_decision(handle, DECIDE, decision, KycState, update)


@router.post(
    "/v1/kyc/{case_number}/resubmit",
    status_code=202,
    responses=errors(s409="NotAwaitingDecision: the case does not wait for documents"),
)
async def resubmit_documents(
    principal: Submitter, case_number: CaseNumber, sessions: SessionsDep, client: TemporalDep
) -> KycState:
    """Tell a case waiting for the member that new documents are uploaded: the checks run again."""
    handle = await _case_handle(sessions, client, case_number)
    state = await process_state(handle, KycState)
    if state.stage != Stage.AWAITING_MEMBER:
        raise BankflowError(
            ErrorCode.NOT_AWAITING_DECISION,
            f"case is {state.stage.value}, not waiting for the member's documents",
        )
    await handle.signal(RESUBMIT, Resubmission(by=principal.username))
    return state


@router.get("/v1/kyc")
async def kyc_inbox(
    principal: Decider,
    client: TemporalDep,
    stage: Annotated[Stage | None, Query(description="e.g. awaiting_review")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[KycCaseSummary]:
    """Open cases waiting for a role the caller holds (kyc_reviewer, compliance_officer)."""
    roles = sorted(DECIDER_ROLES & principal.roles)
    if not roles:
        return []
    query = (
        "WorkflowType = 'KycReview' AND ExecutionStatus = 'Running' AND "
        f"{sa.ASSIGNED_ROLE.name} IN ({', '.join(repr(r) for r in roles)})"
    )
    if stage:
        query += f" AND {sa.STAGE.name} = '{stage.value}'"
    found: list[KycCaseSummary] = []
    async for wf in client.list_workflows(query, limit=limit):
        attrs = wf.typed_search_attributes
        found.append(
            KycCaseSummary(
                case_number=attrs.get(sa.BUSINESS_ID) or "",
                workflow_id=wf.id,
                stage=attrs.get(sa.STAGE),
                risk=attrs.get(sa.RISK),
                assigned_role=attrs.get(sa.ASSIGNED_ROLE),
                branch=attrs.get(sa.BRANCH),
                started_at=wf.start_time,
            )
        )
    return found
