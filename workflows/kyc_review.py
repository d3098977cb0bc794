"""KycReview: decide whether a member's identity is verified.

The automated checks run first (required documents, ID number formats, expiry, age, duplicate
identity, watch-list screening) and rate the risk. An under-age member is rejected; incomplete or
invalid documents go back to the member. Low risk is approved automatically or by one reviewer
(configurable), medium risk by a kyc_reviewer, high risk (or a watch-list hit) by a kyc_reviewer
and then a different compliance_officer. Decisions are Updates whose validators refuse the
submitter, the wrong role and the same person twice. A reviewer may ask for more documents: the
member re-submits (Signal) and the checks run again. A waiting decision reminds its role after
24 h and escalates to a supervisor after 48 h; a case waiting 30 days for the member expires.
The outcome updates the member's KYC status and tier, opens a savings account if there is none,
and e-mails the member.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

from workflows import recipients
from workflows.common import DB_ACTIVITY, NOTIFY_ACTIVITY, refuse

with workflow.unsafe.imports_passed_through():
    # NotificationRequest validates e-mail addresses; email_validator loads idna lazily, so both
    # are passed through whole rather than re-imported inside the sandbox.
    import email_validator  # noqa: F401
    import idna.core  # noqa: F401

    from activities.kyc import KycActivities
    from activities.notifications import NotificationActivities
    from schemas import search_attributes as sa
    from schemas.errors import ErrorCode
    from schemas.kyc import (
        DECISION_STAGES,
        SETTLED_STAGES,
        TERMINAL_STAGES,
        CheckReport,
        CheckRequest,
        CompleteRequest,
        CompleteResult,
        Contact,
        Decision,
        DecisionInput,
        HistoryEntry,
        KycInput,
        KycState,
        OpenCaseRequest,
        Resubmission,
        Stage,
    )
    from schemas.notifications import (
        NotificationRequest,
        NotificationResult,
        StaffRecipients,
        StaffRecipientsQuery,
    )

# Handler names, shared with the API.
INITIAL_OUTCOME = "initial_outcome"
DECIDE = "decide"
RESUBMIT = "resubmit"
INSTITUTION = "bankflow savings and credit"


# The checks screen the whole watch list (fuzzy matching in Python): more than a posting's 10 s.
CHECK_ACTIVITY: dict[str, Any] = {**DB_ACTIVITY, "start_to_close_timeout": timedelta(seconds=60)}


@workflow.defn(name="KycReview")
class KycReviewWorkflow:
    @workflow.init
    def __init__(self, inp: KycInput) -> None:
        self._inp = inp
        self._state = KycState(
            case_number=inp.case_number,
            member_number=inp.member_number,
            stage=Stage.CHECKING,
            submitted_by=inp.submitted_by,
        )
        self._decision: DecisionInput | None = None
        self._decided = 0  # decisions the run loop has taken
        self._entered = 0  # stages entered, so a decision's caller waits for the next one
        self._first_reviewer_id: int | None = None
        self._resubmitted = False

    @workflow.run
    async def run(self, inp: KycInput) -> KycState:
        await self._activity(
            KycActivities.open_case,
            OpenCaseRequest(
                case_number=inp.case_number, member_id=inp.member_id, submitted_by=inp.submitted_by
            ),
        )
        while (outcome := await self._review_round()) is None:
            pass
        await self._finish(*outcome)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    async def _review_round(self) -> tuple[Stage, str] | None:
        """One pass of checks and decisions: the outcome, or None to run the checks again."""
        self._state.round += 1
        self._enter(Stage.CHECKING, f"round {self._state.round}")
        report: CheckReport = await self._activity(
            KycActivities.run_checks,
            CheckRequest(
                case_number=self._inp.case_number,
                member_id=self._inp.member_id,
                today=workflow.now().date(),
                policy=self._inp.policy,
            ),
        )
        self._state.checks, self._state.risk = report.checks, report.risk
        self._state.risk_reasons = report.risk_reasons
        workflow.upsert_search_attributes([sa.RISK.value_set(report.risk)])
        if report.underage:
            return Stage.REJECTED, "underage: the member is younger than 18"
        if report.missing:
            return await self._ask_member(report.missing)
        if report.risk == "low" and self._inp.policy.low_risk_routing == "auto":
            return Stage.APPROVED, "low risk: approved automatically"
        self._first_reviewer_id = None
        review = await self._await_decision(Stage.AWAITING_REVIEW)
        if review.action == "approve" and report.risk == "high":
            self._first_reviewer_id = review.decided_by_id
            review = await self._await_decision(Stage.AWAITING_COMPLIANCE)
        if review.action == "approve":
            return Stage.APPROVED, f"approved by {review.decided_by}"
        if review.action == "reject":
            return Stage.REJECTED, f"{review.reason_code}: {review.note}".rstrip(": ")
        return await self._ask_member(list(review.documents))

    async def _ask_member(self, needed: list[str]) -> tuple[Stage, str] | None:
        self._state.requested_documents = needed
        self._resubmitted = False
        await self._notify_member(
            "kyc_more_information",
            f"r{self._state.round}",
            needed=needed,
            respond_by=(workflow.now() + self._inp.policy.member_response_timeout)
            .date()
            .isoformat(),
        )
        self._enter(Stage.AWAITING_MEMBER, "waiting for: " + "; ".join(needed))
        try:
            await workflow.wait_condition(
                lambda: self._resubmitted, timeout=self._inp.policy.member_response_timeout
            )
        except TimeoutError:
            return Stage.EXPIRED, "no documents from the member before the deadline"
        self._state.requested_documents = []
        return None

    async def _await_decision(self, stage: Stage) -> DecisionInput:
        """Wait for a decision, reminding the role and then escalating to a supervisor."""
        role = DECISION_STAGES[stage]
        self._decision = None
        self._enter(stage, role=role)
        policy = self._inp.policy
        waited = timedelta(0)
        for after, template in (
            (policy.reminder_after, "kyc_reminder"),
            (policy.escalate_after, "kyc_escalation"),
        ):
            try:
                await workflow.wait_condition(
                    lambda: self._decision is not None,
                    timeout=max(after - waited, timedelta(seconds=1)),
                )
                break
            except TimeoutError:
                waited = max(after, waited)
                await self._notify_staff(template, stage, role, waited)
        await workflow.wait_condition(lambda: self._decision is not None)
        decision = self._decision
        assert decision is not None
        self._state.decisions.append(
            Decision(
                at=workflow.now(),
                stage=stage,
                action=decision.action,
                by=decision.decided_by,
                reason_code=decision.reason_code,
                note=decision.note,
                documents=list(decision.documents),
            )
        )
        self._decided += 1
        return decision

    async def _finish(self, stage: Stage, reason: str) -> None:
        self._enter(Stage.ACTIVATING if stage == Stage.APPROVED else Stage.CLOSING, reason)
        result: CompleteResult = await self._activity(
            KycActivities.complete_case,
            CompleteRequest(
                case_number=self._inp.case_number,
                member_id=self._inp.member_id,
                outcome=stage.value,
                reason=reason,
                account_currency=self._inp.policy.account_currency,
            ),
        )
        self._state.outcome_reason = reason
        self._state.account_number = result.account_number
        template = {
            Stage.APPROVED: "kyc_approved",
            Stage.REJECTED: "kyc_rejected",
            Stage.EXPIRED: "kyc_expired",
        }[stage]
        await self._notify_member(
            template,
            "outcome",
            tier=result.kyc_tier,
            account_number=result.account_number,
            reason=reason,
        )
        self._enter(stage, reason)

    async def _notify_member(self, template: str, step: str, **context: Any) -> None:
        process = f"kyc-{self._inp.case_number}-{step}"
        if workflow.patched(recipients.MEMBER_PATCH):
            await self._send(template, process, recipients.member(self._inp.member_id), context)
            return
        contact: Contact | None = await self._activity(  # a run from before recipient ids
            KycActivities.member_contact, self._inp.member_id
        )
        if contact is not None:
            await self._send(
                template, process, recipients.legacy(contact.email, contact.name), context
            )

    async def _notify_staff(
        self, template: str, stage: Stage, role: str, waited: timedelta
    ) -> None:
        policy = self._inp.policy
        target = role if template == "kyc_reminder" else policy.supervisor_role
        to: list[dict[str, Any]]
        if workflow.patched(recipients.STAFF_PATCH):
            found: StaffRecipients = await self._activity(
                NotificationActivities.staff_recipients, StaffRecipientsQuery(roles=[target])
            )
            to = [recipients.staff(user_id) for user_id in found.user_ids]
        else:  # a run from before recipient ids
            contacts: list[Contact] = await self._activity(KycActivities.staff_contacts, target)
            to = [recipients.legacy(c.email, c.name) for c in contacts]
        hours = int(waited.total_seconds() // 3600)
        context = {
            "role": role,
            "risk": self._state.risk,
            "waited": f"{hours} hours" if hours else f"{int(waited.total_seconds())} seconds",
            "supervisor_role": policy.supervisor_role,
        }
        process = f"kyc-{self._inp.case_number}-r{self._state.round}-{stage.value}"
        for recipient in to:
            await self._send(template, process, recipient, context)
        self._note(f"{template.removeprefix('kyc_')} sent to {len(to)} {target}(s)")

    async def _send(
        self,
        template: str,
        process_id: str,
        recipient: dict[str, Any],
        context: dict[str, Any],
    ) -> NotificationResult:
        result: NotificationResult = await workflow.execute_activity(
            "send_notification",
            NotificationRequest(
                process_id=process_id,
                template=template,
                **recipient,
                context={
                    "case_number": self._inp.case_number,
                    "institution": INSTITUTION,
                    **context,
                },
            ),
            result_type=NotificationResult,
            **NOTIFY_ACTIVITY,
        )
        return result

    async def _activity(self, fn: Any, arg: Any) -> Any:
        return await workflow.execute_activity_method(fn, arg, **CHECK_ACTIVITY)

    def _enter(self, stage: Stage, note: str = "", role: str | None = None) -> None:
        self._entered += 1
        self._state.stage = stage
        self._state.pending_role = role
        self._state.pending_decision = (
            f"{role}: approve, reject or request_information" if role else None
        )
        self._state.history.append(HistoryEntry(at=workflow.now(), stage=stage, note=note))
        workflow.upsert_search_attributes(
            [
                sa.STAGE.value_set(stage.value),
                sa.ASSIGNED_ROLE.value_set(role) if role else sa.ASSIGNED_ROLE.value_unset(),
            ]
        )
        waiting = f", waiting for a {role}" if role else ""
        risk = f" ({self._state.risk} risk)" if self._state.risk else ""
        workflow.set_current_details(
            f"KYC case {self._inp.case_number}{risk}: **{stage.value}**{waiting}"
            + (f" - {note}" if note else "")
        )

    def _note(self, note: str) -> None:
        self._state.history.append(
            HistoryEntry(at=workflow.now(), stage=self._state.stage, note=note)
        )

    @workflow.query(name="state")
    def state(self) -> KycState:
        return self._state

    @workflow.update(name=INITIAL_OUTCOME)
    async def initial_outcome(self) -> KycState:
        """Wait until the case is decided or waits for someone (a reviewer or the member)."""
        await workflow.wait_condition(lambda: self._state.stage in SETTLED_STAGES)
        return self._state

    @workflow.update(name=DECIDE)
    async def decide(self, decision: DecisionInput) -> KycState:
        """Approve, reject or ask for documents; returns once the case has moved on."""
        if self._decision is not None:  # a concurrent decision was accepted first
            raise refuse(ErrorCode.NOT_AWAITING_DECISION, "another decision was made first")
        self._decision = decision
        mine, entered = self._decided + 1, self._entered
        await workflow.wait_condition(
            lambda: (
                self._decided >= mine
                and self._entered > entered
                and self._state.stage in SETTLED_STAGES
            )
        )
        return self._state

    @decide.validator
    def _validate_decide(self, decision: DecisionInput) -> None:
        stage = self._state.stage
        role = DECISION_STAGES.get(stage)
        if role is None or self._decision is not None:
            raise refuse(
                ErrorCode.NOT_AWAITING_DECISION, f"case is {stage.value}, not awaiting a decision"
            )
        if decision.decided_by_id == self._inp.submitted_by_id:
            raise refuse(ErrorCode.FOUR_EYES, "four-eyes: the submitter cannot decide the case")
        if stage == Stage.AWAITING_COMPLIANCE and decision.decided_by_id == self._first_reviewer_id:
            raise refuse(
                ErrorCode.FOUR_EYES, "four-eyes: compliance needs someone other than the reviewer"
            )
        if role not in decision.decided_by_roles:
            raise refuse(ErrorCode.FORBIDDEN, f"this decision needs the role {role}")

    @workflow.signal(name=RESUBMIT)
    def resubmit(self, resubmission: Resubmission) -> None:
        """New documents are in: run the checks again (only while waiting for the member)."""
        if self._state.stage == Stage.AWAITING_MEMBER and not self._resubmitted:
            self._resubmitted = True
            self._note(f"documents re-submitted by {resubmission.by}")
        else:
            self._note(f"re-submission by {resubmission.by} ignored: case is {self._state.stage}")


__all__ = ["TERMINAL_STAGES", "KycReviewWorkflow"]
