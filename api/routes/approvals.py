"""The approvals inbox: every running process waiting for a role the caller holds, whatever the
process (loan approvals, large money movements, KYC reviews, reversals).

It reads Temporal's visibility store (search attributes `BankflowAssignedRole` and
`BankflowStage`), so it needs no table of its own and sees a new process type as soon as that
workflow sets its assigned role. Visibility is eventually consistent: a decision made a moment
ago may still show for about a second.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from activities.reads.loans import currency_scales, loan_details
from api.deps import ANY_STAFF, Principal, SessionsDep, TemporalDep, require_roles
from domain.money import to_major
from schemas import search_attributes as sa
from schemas import types
from schemas.approvals import ApprovalItem

router = APIRouter(prefix="/v1/approvals", tags=["approvals"])

Staff = Annotated[Principal, Depends(require_roles(*ANY_STAFF))]

# Where each process type is read and decided; the business id completes the path.
LINKS = {
    "LoanApproval": "/v1/loans/{}",
    "MoneyMovement": "/v1/movements/{}",
    "Reversal": "/v1/journals/{}/reversals",
    "KycReview": "/v1/kyc/{}",
}


@router.get("")
async def approvals_inbox(
    principal: Staff,
    client: TemporalDep,
    sessions: SessionsDep,
    process: types.ProcessType | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> list[ApprovalItem]:
    """What the caller's roles may decide now, newest first: running processes whose assigned
    role is one of the caller's roles. `?process=LoanApproval` narrows it to one process type.
    The process itself still refuses a decision it does not allow (four-eyes, second vote)."""
    roles = sorted(principal.roles)
    if not roles:
        return []
    listed = ", ".join(f"'{r}'" for r in roles)
    query = f"ExecutionStatus = 'Running' AND {sa.ASSIGNED_ROLE.name} IN ({listed})"
    if process:
        query += f" AND WorkflowType = '{process}'"
    items: list[ApprovalItem] = []
    async for wf in client.list_workflows(query, limit=limit):
        attrs = wf.typed_search_attributes
        business_id = attrs.get(sa.BUSINESS_ID)
        amount = attrs.get(sa.AMOUNT_MINOR)
        link = LINKS.get(wf.workflow_type)
        items.append(
            ApprovalItem(
                process=wf.workflow_type,
                workflow_id=wf.id,
                business_id=business_id,
                stage=attrs.get(sa.STAGE),
                assigned_role=attrs.get(sa.ASSIGNED_ROLE),
                amount=None,
                currency=attrs.get(sa.CURRENCY),
                product=attrs.get(sa.PRODUCT),
                branch=attrs.get(sa.BRANCH),
                details=None,
                amount_minor=amount,
                link=link.format(business_id) if link and business_id else None,
                started_at=wf.start_time,
            )
        )
    return await _complete(sessions, items)


async def _complete(sessions: SessionsDep, items: list[ApprovalItem]) -> list[ApprovalItem]:
    """Amounts in major units (each currency's scale) and, for loans, the plain-words details."""
    loans = [i.business_id for i in items if i.process == "LoanApproval" and i.business_id]
    async with sessions() as session:
        scales = await currency_scales(session)
        details = await loan_details(session, loans)
    for item in items:
        scale = scales.get(item.currency or "")
        if item.amount_minor is not None and scale is not None:
            item.amount = to_major(item.amount_minor, scale)
        item.details = details.get(item.business_id or "")
    return items
