"""LoanApproval's rules and words as plain functions of its input and state.

The workflow is the authority on who may decide: its Update validators call these functions, so a
forbidden vote, amendment or disbursement is refused before anything is written to history, and
the handlers call them again for what changed since validation. The texts are what operations
staff read in the Web UI and the trail. Pure and deterministic (no I/O, no clock).
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

from workflows.common import refuse

with workflow.unsafe.imports_passed_through():
    from domain.money import to_major
    from domain.schedule import ScheduleError, generate_schedule
    from schemas.disbursements import DISBURSER_ROLES, DisburseRequest
    from schemas.errors import ErrorCode
    from schemas.loan_products import schedule_terms
    from schemas.loans import (
        REQUESTER_ROLES,
        Amendment,
        Decision,
        GuarantorAnswer,
        LoanApprovalState,
        LoanInput,
        Stage,
    )


def words(role: str) -> str:
    return role.replace("_", " ")


def money(inp: LoanInput, amount_minor: int) -> str:
    p = inp.product
    return f"{to_major(amount_minor, p.scale)} {p.currency}"


def pending_guarantors(state: LoanApprovalState) -> list[str]:
    return [n for n, status in state.guarantors.items() if status == "pending"]


def schedule_summary(inp: LoanInput, state: LoanApprovalState) -> dict[str, Any]:
    """The current terms' schedule in a few figures (trail data and the member's e-mails)."""
    p = inp.product
    schedule = generate_schedule(
        schedule_terms(
            p,
            principal_minor=state.principal_minor,
            repayments=state.repayments,
            scale=p.scale,
            disbursed_on=inp.expected_disbursement_on,
        )
    )
    first = schedule.installments[0]
    return {
        "loan_number": inp.loan_number,
        "principal": money(inp, state.principal_minor),
        "repayments": state.repayments,
        "first_installment": money(inp, first.total_minor),
        "first_due_date": first.due_date.isoformat(),
        "total_interest": money(inp, schedule.total_interest_minor),
        "total_due": money(inp, schedule.total_due_minor),
    }


def details(inp: LoanInput, s: LoanApprovalState) -> str:
    """What the application waits for, in plain words (the Web UI's current details)."""
    head = f"{inp.loan_number}: {money(inp, s.principal_minor)} {inp.product.name}: "
    level = s.level
    if s.stage == Stage.CHECKING_ELIGIBILITY:
        return head + "checking eligibility"
    if s.stage == Stage.AWAITING_GUARANTORS:
        pending = len(pending_guarantors(s))
        return head + f"waiting for {pending} of {len(s.guarantors)} guarantors to consent"
    if s.stage == Stage.AWAITING_APPROVAL and level is not None:
        _, tier = inp.product.tier_for(s.principal_minor)
        who = " or ".join(words(r) for r in level.allowed_roles)
        step = f" (level {level.level} of {len(tier.levels)})"
        if level.quorum > 1:
            remaining = level.quorum - level.approvals
            return head + f"waiting for {remaining} of {level.quorum} {who} votes{step}"
        return head + f"waiting for a {who} to decide{step}"
    if s.stage == Stage.RETURNED_FOR_CHANGES:
        return head + "returned for changes: waiting for the applicant to amend"
    if s.stage == Stage.APPROVED:
        return head + "approved: waiting for disbursement"
    return head + f"{s.stage.value}: {s.reason}"


def refuse_decision(inp: LoanInput, s: LoanApprovalState, voters: set[int], d: Decision) -> None:
    """Four-eyes and routing: the maker, the applicant and a guarantor never decide; only the
    level's roles do, once per round; a refusal needs a reason; terms only within the product."""
    who, level = d.actor, s.level
    if s.stage != Stage.AWAITING_APPROVAL or level is None:
        raise refuse(ErrorCode.NOT_AWAITING_DECISION, f"loan is {s.stage.value}")
    if who.user_id == inp.entered_by_id:
        raise refuse(ErrorCode.FOUR_EYES, "four-eyes: you entered this application")
    if inp.member_id in who.member_ids:
        raise refuse(ErrorCode.FOUR_EYES, "four-eyes: you are the applicant")
    if {g.member_id for g in inp.guarantors} & set(who.member_ids):
        raise refuse(ErrorCode.FOUR_EYES, "four-eyes: you guarantee this loan")
    if not set(level.allowed_roles) & set(who.roles):
        allowed = " or ".join(level.allowed_roles)
        raise refuse(ErrorCode.FORBIDDEN, f"level {level.level} is decided by {allowed}")
    if who.user_id in voters:
        raise refuse(ErrorCode.ALREADY_VOTED, "you have already decided in this round")
    if d.action != "approve" and not d.reason:
        raise refuse(ErrorCode.VALIDATION, f"a reason is required to {d.action}")
    refuse_terms(inp, s, d.principal_minor, d.repayments, lower_only=True)


def refuse_consent(
    inp: LoanInput, s: LoanApprovalState, queued: list[GuarantorAnswer], a: GuarantorAnswer
) -> None:
    """Recording a guarantor's answer is a decision: never by the staff user who entered the
    application nor by the applicant (four-eyes), only by a requesting role, once per guarantor
    and only while the application waits for guarantors."""
    if s.stage != Stage.AWAITING_GUARANTORS:
        raise refuse(ErrorCode.NOT_AWAITING_DECISION, f"loan is {s.stage.value}")
    status = s.guarantors.get(a.member_number)
    if status is None:
        raise refuse(ErrorCode.NOT_FOUND, f"{a.member_number} does not guarantee this loan")
    if status != "pending" or any(q.member_number == a.member_number for q in queued):
        raise refuse(
            ErrorCode.NOT_AWAITING_DECISION,
            f"guarantor {a.member_number} has answered already ({status})",
        )
    if not set(REQUESTER_ROLES) & set(a.recorded_by_roles):
        raise refuse(ErrorCode.FORBIDDEN, f"recording consent needs one of {list(REQUESTER_ROLES)}")
    if a.recorded_by_id == inp.entered_by_id:
        raise refuse(ErrorCode.FOUR_EYES, "four-eyes: you entered this application")
    if inp.member_id in a.recorded_by_member_ids:
        raise refuse(ErrorCode.FOUR_EYES, "four-eyes: you are the applicant")


def refuse_terms(
    inp: LoanInput,
    s: LoanApprovalState,
    principal: int | None,
    repayments: int | None,
    *,
    lower_only: bool,
) -> None:
    """New terms stay within the product and make a schedule; an approval only lowers."""
    p = inp.product
    if principal is not None:
        if lower_only and principal > s.principal_minor:
            raise refuse(ErrorCode.VALIDATION, "an approval may only lower the principal")
        if not p.min_principal_minor <= principal <= p.max_principal_minor:
            raise refuse(
                ErrorCode.VALIDATION,
                f"{p.code} lends {money(inp, p.min_principal_minor)} to "
                f"{money(inp, p.max_principal_minor)}",
            )
    if repayments is not None and not p.min_repayments <= repayments <= p.max_repayments:
        raise refuse(
            ErrorCode.VALIDATION,
            f"{p.code} takes {p.min_repayments} to {p.max_repayments} repayments",
        )
    try:
        generate_schedule(
            schedule_terms(
                p,
                principal_minor=principal or s.principal_minor,
                repayments=repayments or s.repayments,
                scale=p.scale,
                disbursed_on=inp.expected_disbursement_on,
            )
        )
    except ScheduleError as exc:
        raise refuse(ErrorCode.INVALID_SCHEDULE, str(exc)) from exc


def refuse_amendment(
    inp: LoanInput, s: LoanApprovalState, pending: Amendment | None, a: Amendment
) -> None:
    if s.stage != Stage.RETURNED_FOR_CHANGES or pending is not None:
        raise refuse(
            ErrorCode.NOT_AWAITING_DECISION, f"loan is {s.stage.value}, not returned for changes"
        )
    if not set(REQUESTER_ROLES) & set(a.actor.roles):
        raise refuse(ErrorCode.FORBIDDEN, f"amending needs one of {list(REQUESTER_ROLES)}")
    if a.principal_minor is None and a.repayments is None and a.purpose is None:
        raise refuse(ErrorCode.VALIDATION, "an amendment changes principal, repayments or purpose")
    refuse_terms(inp, s, a.principal_minor, a.repayments, lower_only=False)


def refuse_disbursement(
    inp: LoanInput, s: LoanApprovalState, req: DisburseRequest, *, busy: bool, ended: bool
) -> None:
    """Only an approved loan, once, by a disbursing role; `ended`: withdrawn or finished."""
    busy = busy or s.disbursement_workflow_id is not None
    if s.stage != Stage.APPROVED or busy or ended:
        what = "already being disbursed" if busy else s.stage.value
        raise refuse(ErrorCode.LOAN_STATE, f"{inp.loan_number} is {what}")
    if not set(DISBURSER_ROLES) & set(req.actor.roles):
        raise refuse(ErrorCode.FORBIDDEN, f"disbursing needs one of {list(DISBURSER_ROLES)}")
    if req.disbursement.loan_number != inp.loan_number:
        raise refuse(ErrorCode.VALIDATION, "the disbursement is for another loan")
