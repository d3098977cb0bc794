"""How a KYC case's review starts: its policy from the settings, and the workflow's id, queue,
search attributes and summary. Shared by `POST /v1/members/{m}/kyc` and `bankflow seed kyc-case`.
"""

from __future__ import annotations

from typing import Any

from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from schemas import search_attributes as sa
from schemas.kyc import KycInput, KycPolicy, Stage
from schemas.settings import Settings

WORKFLOW_PREFIX = "kyc-"


def policy(settings: Settings) -> KycPolicy:
    return KycPolicy(
        required_documents=settings.kyc_required_documents,
        low_risk_routing=settings.kyc_low_risk_routing,
        reminder_after=settings.kyc_reminder_after,
        escalate_after=settings.kyc_escalate_after,
        supervisor_role=settings.kyc_supervisor_role,
        member_response_timeout=settings.kyc_member_response_timeout,
        watchlist_hit_score=settings.kyc_watchlist_hit_score,
        watchlist_similar_score=settings.kyc_watchlist_similar_score,
        account_currency=settings.kyc_account_currency,
    )


def start_options(inp: KycInput, settings: Settings) -> dict[str, Any]:
    """Workflow id, queue, search attributes (no personal data) and summary of a KYC case."""
    return {
        "id": WORKFLOW_PREFIX + inp.member_number,
        "task_queue": settings.interactive_task_queue,
        "id_conflict_policy": WorkflowIDConflictPolicy.FAIL,
        "id_reuse_policy": WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        "search_attributes": sa.at_start(
            "KycReview", Stage.CHECKING.value, branch=inp.branch, business_id=inp.case_number
        ),
        "static_summary": f"KYC case {inp.case_number}",
    }
