"""LoanApproval's effects and bookkeeping: approval, rejection and withdrawal, starting the
disbursement, the loan's trail, terms checks, notifications, and settling queued decisions.
Part of `LoanApprovalWorkflow` (workflows/loan_approval.py), split out by responsibility; plain
deterministic methods, no handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ParentClosePolicy

from workflows import loan_approval_rules as rules
from workflows import recipients
from workflows.common import DB_ACTIVITY, business_failure

with workflow.unsafe.imports_passed_through():
    import email_validator  # noqa: F401  (NotificationRequest validates e-mail addresses)

    from activities.loans import LoanActivities
    from schemas import search_attributes as sa
    from schemas.disbursements import (
        DisbursementInput,
        DisburseRequest,
        disbursement_workflow_id,
    )
    from schemas.loans import (
        SYSTEM,
        Actor,
        Amendment,
        Decision,
        EligibilityCheck,
        GuarantorAnswer,
        LoanApprovalState,
        LoanEventRecord,
        LoanInput,
        LoanState,
        Recipient,
        Stage,
        TermsCheckRequest,
        TermsCheckResult,
        Withdrawal,
    )
    from schemas.notifications import NotificationRequest, NotificationResult

# Update, signal and query names, shared with the API.
INITIAL_OUTCOME = "initial_outcome"
DECIDE = "decide"
AMEND = "amend"
WITHDRAW = "withdraw"
DISBURSE = "disburse"
GUARANTOR_CONSENT = "guarantor_consent"
GUARANTOR_ANSWER = "guarantor_answer"  # the Signal runs started before the Update use
# Runs from here on apply the consent rules to every answer, also one sent as the old Signal.
CONSENT_RULES_PATCH = "guarantor-consent-rules"


class LoanApprovalSteps:
    # Set by LoanApprovalWorkflow.__init__ (the workflow's state; see there).
    _inp: LoanInput
    _seq: int
    _state: LoanApprovalState
    _answers: list[GuarantorAnswer]
    _answered: int
    _queue: list[tuple[int, tuple[int, int], Decision]]
    _tickets: int
    _taken: int
    _stale: set[int]
    _voters: set[int]
    _amendment: Amendment | None
    _withdrawal: Withdrawal | None
    _disburse: DisburseRequest | None
    _idle: bool
    _finished: bool

    async def _approved(self) -> None:
        self._state.level = None
        await self._record(
            "approved",
            stage=Stage.APPROVED,
            to_state=LoanState.APPROVED,
            data=rules.schedule_summary(self._inp, self._state),
        )
        await self._notify_member("loan_approved", rules.schedule_summary(self._inp, self._state))
        if self._inp.product.auto_disburse:
            await self._start_disbursement(self._auto_disbursement())
            return
        try:
            await self._wait(
                lambda: self._withdrawal is not None or self._disburse is not None,
                self._inp.approval_validity,
            )
        except TimeoutError:
            return  # still approved: disbursement (the next process) takes it from here
        if self._disburse is not None:
            await self._start_disbursement(self._disburse)
            return
        await self._withdraw()

    def _auto_disbursement(self) -> DisburseRequest:
        """The product disburses on approval: to the member's savings, today (workflow time)."""
        inp = self._inp
        return DisburseRequest(
            actor=Actor(user_id=0, username=SYSTEM, roles=[]),
            disbursement=DisbursementInput(
                loan_number=inp.loan_number,
                attempt=1,
                disbursed_on=workflow.now().date(),
                requested_by=SYSTEM,
                branch=inp.branch,
                product=inp.product.code,
                currency=inp.product.currency,
                amount_minor=self._state.principal_minor,
            ),
        )

    async def _start_disbursement(self, req: DisburseRequest) -> None:
        """Hand the loan to the Disbursement saga (a child that outlives this workflow); from
        here the applicant can no longer withdraw."""
        d = req.disbursement
        child_id = disbursement_workflow_id(d.loan_number, d.attempt)
        human = req.actor.username != SYSTEM
        await self._record(
            "disbursement_requested",
            actor=req.actor.username,
            actor_id=req.actor.user_id if human else None,
            data={"workflow_id": child_id, "destination": d.destination},
        )
        await workflow.start_child_workflow(
            "Disbursement",
            d,
            id=child_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        self._state.disbursement_workflow_id = child_id

    async def _reject(self, actor: Actor | None, reason: str) -> None:
        self._state.level = None
        self._state.reason = reason
        await self._record(
            "rejected",
            stage=Stage.REJECTED,
            to_state=LoanState.REJECTED,
            actor=actor.username if actor else SYSTEM,
            actor_id=actor.user_id if actor else None,
            reason=reason,
        )
        await self._notify_member("loan_rejected", {"reason": reason})

    async def _withdraw(self) -> None:
        w = self._withdrawal
        assert w is not None
        self._state.level = None
        self._state.reason = w.reason
        await self._record(
            "withdrawn",
            stage=Stage.WITHDRAWN,
            to_state=LoanState.WITHDRAWN,
            actor=w.actor.username,
            actor_id=w.actor.user_id,
            reason=w.reason,
        )

    # --- helpers -------------------------------------------------------------------------------

    def _may_record(self, answer: GuarantorAnswer) -> bool:
        try:
            rules.refuse_consent(self._inp, self._state, self._answers, answer)
        except ApplicationError as refusal:
            workflow.logger.warning(
                "guarantor answer by staff user %s ignored: %s", answer.recorded_by_id, refusal
            )
            return False
        return True

    async def _wait(self, ready: Callable[[], bool], limit: timedelta | None) -> None:
        """Wait for input; while waiting the workflow is `idle`, which is when handlers answer."""
        self._settle()
        self._idle = True
        try:
            await workflow.wait_condition(ready, timeout=limit)
        finally:
            self._idle = False

    def _settle(self) -> None:
        self._taken = max(self._taken, self._tickets - len(self._queue))

    def _settle_all(self) -> None:
        for ticket, _, _ in self._queue:
            self._stale.add(ticket)
        self._queue.clear()
        self._taken = self._tickets
        self._amendment = None
        self._idle = True

    async def _record(
        self,
        event: str,
        *,
        stage: Stage | None = None,
        role: str | None = None,
        to_state: LoanState | None = None,
        actor: str = SYSTEM,
        actor_id: int | None = None,
        reason: str = "",
        data: dict[str, Any] | None = None,
        eligibility: list[EligibilityCheck] | None = None,
        guarantor: tuple[int, Literal["accepted", "declined"]] | None = None,
    ) -> None:
        """Move the workflow's state, the UI's view of it, and the loan's trail in Postgres."""
        s = self._state
        from_state = s.state
        if stage is not None:
            s.stage = stage
            s.assigned_role = role
        elif role is not None:
            s.assigned_role = role
        if to_state is not None:
            s.state = to_state
        s.details = rules.details(self._inp, s)
        workflow.upsert_search_attributes(
            [
                sa.STAGE.value_set(s.stage.value),
                sa.AMOUNT_MINOR.value_set(s.principal_minor),
                sa.ASSIGNED_ROLE.value_set(s.assigned_role)
                if s.assigned_role
                else sa.ASSIGNED_ROLE.value_unset(),
            ]
        )
        workflow.set_current_details(s.details)
        self._seq += 1
        await self._activity(
            LoanActivities.record_loan_event,
            LoanEventRecord(
                loan_id=self._inp.loan_id,
                workflow_id=workflow.info().workflow_id,
                seq=self._seq,
                at=workflow.now(),
                event=event,
                actor=actor,
                actor_id=actor_id,
                from_state=from_state if to_state else None,
                to_state=to_state,
                reason=reason,
                data=data or {},
                stage=s.stage,
                assigned_role=s.assigned_role,
                current_details=s.details,
                principal_minor=s.principal_minor,
                repayments=s.repayments,
                purpose=s.purpose,
                eligibility=eligibility,
                guarantor_member_id=guarantor[0] if guarantor else None,
                guarantor_status=guarantor[1] if guarantor else None,
            ),
        )

    async def _check_terms(
        self, principal_minor: int, *, guarantor_cover: bool
    ) -> TermsCheckResult:
        inp = self._inp
        result: TermsCheckResult = await self._activity(
            LoanActivities.check_loan_terms,
            TermsCheckRequest(
                loan_id=inp.loan_id,
                member_id=inp.member_id,
                product=inp.product,
                principal_minor=principal_minor,
                guarantors=inp.guarantors,
                guarantor_cover=guarantor_cover,
            ),
        )
        return result

    async def _activity(self, method: Any, arg: Any) -> Any:
        return await workflow.execute_activity_method(method, arg, **DB_ACTIVITY)

    async def _notify_member(self, template: str, context: dict[str, Any]) -> None:
        process = workflow.info().workflow_id
        if workflow.patched(recipients.MEMBER_PATCH):
            await self._notify(template, recipients.member(self._inp.member_id), process, context)
            return
        member: Recipient = await self._activity(  # a run from before recipient ids
            LoanActivities.loan_member_recipient, self._inp.member_id
        )
        if not member.email:
            await self._record("notification_skipped", reason=f"{template}: no e-mail address")
            return
        await self._notify(template, recipients.legacy(member.email, member.name), process, context)

    async def _notify(
        self, template: str, to: dict[str, Any], process: str, context: dict[str, Any]
    ) -> None:
        """Send one e-mail; a message the notification service refuses is noted, not fatal."""
        try:
            result: NotificationResult = await workflow.execute_activity(
                "send_notification",
                NotificationRequest(
                    process_id=process,
                    template=template,
                    **to,
                    context={
                        "loan_number": self._inp.loan_number,
                        "product": self._inp.product.name,
                        **context,
                    },
                ),
                result_type=NotificationResult,
                **DB_ACTIVITY,
            )
        except ActivityError as exc:
            failure = business_failure(exc)
            if failure is None:
                raise
            await self._record("notification_failed", reason=f"{template}: {failure.detail}")
            return
        if result.status == "skipped":
            await self._record("notification_skipped", reason=f"{template}: no e-mail address")

    # --- handlers ------------------------------------------------------------------------------
