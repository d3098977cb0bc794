"""LoanApproval: from a member's application to an approved (or rejected, or withdrawn) loan.

1. Eligibility: the product's rules (KYC, membership age, savings multiple, arrears, own savings,
   guarantee share), each recorded with its reason; an ineligible application ends rejected.
2. Guarantor consent: each guarantor accepts or declines, as staff record it (an Update whose
   validator refuses the staff user who entered the application and the applicant); an
   acceptance counts only if the guarantor's free savings cover the guarantee; a decline, or no
   answer from everyone within the consent time, ends the application.
3. Approval routing by the product's amount tiers: levels in order, each needing `quorum`
   distinct approvers of its role. Decisions are Updates whose validator refuses, before
   anything is written, a role not allowed at this level, the staff user who entered the
   application, the applicant, a guarantor and a second vote. Approval may lower the principal
   or change the term (the schedule is recomputed and guarantees re-checked); return for changes
   waits for the applicant's amendment and restarts routing.
4. SLA per level: a reminder, then escalation to the next role. The applicant may withdraw at
   any time until disbursement takes over.
Every step goes to the loan's trail (`loan_events`) with who, when and why.
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
from workflows.common import DB_ACTIVITY, business_failure, refuse

with workflow.unsafe.imports_passed_through():
    import email_validator  # noqa: F401  (NotificationRequest validates e-mail addresses)

    from activities.loans import LoanActivities
    from activities.notifications import NotificationActivities
    from schemas import search_attributes as sa
    from schemas.disbursements import (
        DisbursementInput,
        DisburseRequest,
        disbursement_workflow_id,
    )
    from schemas.errors import ErrorCode
    from schemas.loan_products import DEFAULT_ESCALATION, ApprovalLevel
    from schemas.loans import (
        REQUESTER_ROLES,
        SYSTEM,
        TERMINAL_STAGES,
        Actor,
        Amendment,
        CoverRequest,
        Decision,
        EligibilityCheck,
        GuarantorAnswer,
        LevelProgress,
        LoanApprovalState,
        LoanEventRecord,
        LoanInput,
        LoanState,
        Recipient,
        StaffRecipientsRequest,
        Stage,
        TermsCheckRequest,
        TermsCheckResult,
        Vote,
        Withdrawal,
    )
    from schemas.notifications import (
        NotificationRequest,
        NotificationResult,
        StaffRecipients,
        StaffRecipientsQuery,
    )

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


@workflow.defn(name="LoanApproval")
class LoanApprovalWorkflow:
    @workflow.init
    def __init__(self, inp: LoanInput) -> None:
        self._inp = inp
        self._seq = 0
        self._state = LoanApprovalState(
            loan_number=inp.loan_number,
            state=LoanState.SUBMITTED,
            stage=Stage.CHECKING_ELIGIBILITY,
            principal_minor=inp.principal_minor,
            repayments=inp.repayments,
            purpose=inp.purpose,
            guarantors={g.member_number: "pending" for g in inp.guarantors},
        )
        self._answers: list[GuarantorAnswer] = []
        self._answered = 0  # answers taken off the queue so far
        # Decisions wait here, tagged with the (round, level) they were validated for.
        self._queue: list[tuple[int, tuple[int, int], Decision]] = []
        self._tickets = 0
        self._taken = 0
        self._stale: set[int] = set()
        self._voters: set[int] = set()
        self._amendment: Amendment | None = None
        self._withdrawal: Withdrawal | None = None
        self._disburse: DisburseRequest | None = None
        self._idle = False
        self._finished = False

    @workflow.run
    async def run(self, inp: LoanInput) -> LoanApprovalState:
        await self._process()
        self._finished = True
        self._settle_all()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    # --- the process -------------------------------------------------------------------------

    async def _process(self) -> None:
        result = await self._check_terms(self._state.principal_minor, guarantor_cover=False)
        self._state.eligibility = result.checks
        await self._record("eligibility_checked", eligibility=result.checks)
        if not result.eligible:
            await self._reject(None, "not eligible: " + "; ".join(result.reasons))
            return
        if self._withdrawal is not None:
            await self._withdraw()
            return
        if self._inp.guarantors and not await self._collect_consents():
            return
        while True:
            outcome = await self._route()
            if outcome == "approved":
                break
            if outcome != "returned" or not await self._await_amendment():
                return
        await self._approved()

    async def _collect_consents(self) -> bool:
        inp = self._inp
        await self._record("awaiting_guarantors", stage=Stage.AWAITING_GUARANTORS)
        deadline = workflow.now() + inp.guarantor_timeout
        by_number = {g.member_number: g for g in inp.guarantors}
        while rules.pending_guarantors(self._state):
            try:
                await self._wait(
                    lambda: bool(self._answers) or self._withdrawal is not None,
                    deadline - workflow.now(),
                )
            except TimeoutError:
                missing = ", ".join(rules.pending_guarantors(self._state))
                await self._reject(
                    None, f"no consent within {inp.guarantor_timeout} from {missing}"
                )
                return False
            if self._withdrawal is not None:
                await self._withdraw()
                return False
            answer = self._answers.pop(0)
            self._answered += 1
            if self._state.guarantors.get(answer.member_number) != "pending":
                continue  # unknown or already answered: the first answer stands
            if workflow.patched(CONSENT_RULES_PATCH) and not self._may_record(answer):
                continue  # a Signal from someone the Update would have refused
            g = by_number[answer.member_number]
            reason, accepted = answer.note, answer.accept
            if accepted:
                cover = await self._activity(
                    LoanActivities.check_guarantor_cover,
                    CoverRequest(
                        loan_id=inp.loan_id,
                        member_id=g.member_id,
                        amount_minor=g.amount_minor,
                        currency=inp.product.currency,
                    ),
                )
                if not cover.covered:
                    accepted = False
                    reason = (
                        f"free savings {rules.money(self._inp, cover.free_minor)} do not cover the "
                        f"guarantee of {rules.money(self._inp, g.amount_minor)}"
                    )
            self._state.guarantors[g.member_number] = "accepted" if accepted else "declined"
            await self._record(
                "guarantor_accepted" if accepted else "guarantor_declined",
                actor=answer.recorded_by,
                actor_id=answer.recorded_by_id,
                reason=reason,
                data={
                    "guarantor": g.member_number,
                    "amount": rules.money(self._inp, g.amount_minor),
                },
                guarantor=(g.member_id, "accepted" if accepted else "declined"),
            )
            if not accepted:
                await self._reject(None, f"guarantor {g.member_number} declined: {reason}".strip())
                return False
        return True

    async def _route(self) -> str:
        """One approval round through the tier's levels: approved, rejected, returned, withdrawn."""
        self._state.round += 1
        self._voters = set()
        tier_index, tier = self._inp.product.tier_for(self._state.principal_minor)
        self._state.tier = tier_index
        for number, level in enumerate(tier.levels, start=1):
            self._state.level = LevelProgress(
                level=number, role=level.role, quorum=level.quorum, allowed_roles=[level.role]
            )
            await self._record(
                "awaiting_approval",
                stage=Stage.AWAITING_APPROVAL,
                role=level.role,
                data={"round": self._state.round, "level": number, "of": len(tier.levels)},
            )
            outcome = await self._await_level(level)
            if outcome != "approved":
                return outcome
        return "approved"

    async def _await_level(self, level: ApprovalLevel) -> str:
        progress = self._state.level
        assert progress is not None
        started = workflow.now()
        escalate_to = level.escalate_to or DEFAULT_ESCALATION.get(level.role)
        while progress.approvals < progress.quorum:
            deadline = None
            if not progress.reminded:
                deadline = started + self._inp.reminder_after
            elif not progress.escalated and escalate_to:
                deadline = started + self._inp.escalate_after
            try:
                await self._wait(
                    lambda: bool(self._queue) or self._withdrawal is not None,
                    None if deadline is None else max(deadline - workflow.now(), timedelta(0)),
                )
            except TimeoutError:
                await self._sla(progress, escalate_to)
                continue
            if self._withdrawal is not None:
                await self._withdraw()
                return "withdrawn"
            ticket, at, decision = self._queue.pop(0)
            self._taken = ticket
            if at != (self._state.round, progress.level):
                self._stale.add(ticket)
                continue
            outcome = await self._apply(decision, progress)
            if outcome != "vote":
                return outcome
        return "approved"

    async def _apply(self, d: Decision, progress: LevelProgress) -> str:
        role = next(r for r in progress.allowed_roles if r in d.actor.roles)
        self._state.votes.append(
            Vote(
                at=workflow.now(),
                round=self._state.round,
                level=progress.level,
                role=role,
                action=d.action,
                approver=d.actor.username,
                approver_id=d.actor.user_id,
                reason=d.reason,
                principal_minor=d.principal_minor,
                repayments=d.repayments,
            )
        )
        data: dict[str, Any] = {"level": progress.level, "role": role, "round": self._state.round}
        if d.action == "reject":
            await self._reject(d.actor, d.reason)
            return "rejected"
        if d.action == "return":
            await self._record(
                "returned_for_changes",
                stage=Stage.RETURNED_FOR_CHANGES,
                actor=d.actor.username,
                actor_id=d.actor.user_id,
                reason=d.reason,
                data=data,
            )
            return "returned"
        progress.approvals += 1
        if d.principal_minor is not None:
            data["principal"] = rules.money(self._inp, d.principal_minor)
            self._state.principal_minor = d.principal_minor
        if d.repayments is not None:
            data["repayments"] = self._state.repayments = d.repayments
        data.update(
            rules.schedule_summary(self._inp, self._state),
            approvals=progress.approvals,
            quorum=progress.quorum,
        )
        await self._record(
            "approval_vote",
            actor=d.actor.username,
            actor_id=d.actor.user_id,
            reason=d.reason,
            data=data,
        )
        return "vote"

    async def _sla(self, progress: LevelProgress, escalate_to: str | None) -> None:
        """First timeout: remind the level's role; second: let the next role decide too."""
        escalated = progress.reminded
        if escalated:
            assert escalate_to is not None
            progress.escalated = True
            progress.allowed_roles.append(escalate_to)
        progress.reminded = True
        role = (escalate_to if escalated else None) or progress.role
        await self._record(
            "escalated" if escalated else "reminder_sent",
            role=role,
            reason=f"no decision within {self._inp.escalate_after if escalated else self._inp.reminder_after}",
            data={"level": progress.level, "roles": progress.allowed_roles},
        )
        staff: list[dict[str, Any]]
        if workflow.patched(recipients.STAFF_PATCH):
            found: StaffRecipients = await self._activity(
                NotificationActivities.staff_recipients, StaffRecipientsQuery(roles=[role])
            )
            staff = [recipients.staff(user_id) for user_id in found.user_ids]
        else:  # a run from before recipient ids
            people: list[Recipient] = await self._activity(
                LoanActivities.loan_staff_recipients, StaffRecipientsRequest(roles=[role])
            )
            staff = [recipients.legacy(p.email, p.name) for p in people if p.email]
        kind = "escalation" if escalated else "reminder"
        for person in staff:
            await self._notify(
                "loan_approval_escalated" if escalated else "loan_approval_reminder",
                person,
                process=f"{workflow.info().workflow_id}/round-{self._state.round}/"
                f"level-{progress.level}/{kind}",
                context={"role": rules.words(role), "level": progress.level},
            )

    async def _await_amendment(self) -> bool:
        try:
            await self._wait(
                lambda: self._amendment is not None or self._withdrawal is not None,
                self._inp.return_timeout,
            )
        except TimeoutError:
            await self._reject(None, f"not amended within {self._inp.return_timeout}")
            return False
        if self._withdrawal is not None:
            await self._withdraw()
            return False
        a = self._amendment
        assert a is not None
        data: dict[str, Any] = {}
        if a.principal_minor is not None:
            self._state.principal_minor = a.principal_minor
            data["principal"] = rules.money(self._inp, a.principal_minor)
        if a.repayments is not None:
            data["repayments"] = self._state.repayments = a.repayments
        if a.purpose is not None:
            data["purpose"] = self._state.purpose = a.purpose
        await self._record(
            "amended", actor=a.actor.username, actor_id=a.actor.user_id, reason=a.reason, data=data
        )
        self._amendment = None
        return True

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

    @workflow.query(name="state")
    def state(self) -> LoanApprovalState:
        return self._state

    @workflow.update(name=INITIAL_OUTCOME)
    async def initial_outcome(self) -> LoanApprovalState:
        """Wait until the application needs a person (guarantors, approvers) or has ended."""
        await workflow.wait_condition(lambda: self._idle)
        return self._state

    @workflow.update(name=GUARANTOR_CONSENT)
    async def guarantor_consent(self, answer: GuarantorAnswer) -> LoanApprovalState:
        """A guarantor's answer as staff recorded it; returns once the workflow has acted on it
        (checked the guarantor's free savings, recorded it, moved on)."""
        rules.refuse_consent(self._inp, self._state, self._answers, answer)  # again
        self._answers.append(answer)
        ticket = self._answered + len(self._answers)
        await workflow.wait_condition(
            lambda: (self._answered >= ticket and self._idle) or self._finished
        )
        return self._state

    @guarantor_consent.validator
    def _validate_consent(self, answer: GuarantorAnswer) -> None:
        rules.refuse_consent(self._inp, self._state, self._answers, answer)

    @workflow.signal(name=GUARANTOR_ANSWER)
    def guarantor_answer(self, answer: GuarantorAnswer) -> None:
        """Runs started before the consent Update took answers this way; kept for them."""
        self._answers.append(answer)

    @workflow.update(name=DECIDE)
    async def decide(self, d: Decision) -> LoanApprovalState:
        """An approver's vote; returns once the workflow has acted on it."""
        rules.refuse_decision(
            self._inp, self._state, self._voters, d
        )  # again: a concurrent vote may have landed since validation
        level = self._state.level
        assert level is not None
        at = (self._state.round, level.level)
        self._voters.add(d.actor.user_id)
        changes = d.principal_minor is not None or d.repayments is not None
        if d.action == "approve" and changes:
            principal = d.principal_minor or self._state.principal_minor
            result = await self._check_terms(principal, guarantor_cover=True)
            if not result.eligible:
                self._voters.discard(d.actor.user_id)
                raise refuse(ErrorCode.GUARANTEE_NOT_MET, "; ".join(result.reasons))
        self._tickets += 1
        ticket = self._tickets
        self._queue.append((ticket, at, d))
        await workflow.wait_condition(lambda: self._taken >= ticket and self._idle)
        if ticket in self._stale:
            raise refuse(ErrorCode.NOT_AWAITING_DECISION, "the level had moved on")
        return self._state

    @decide.validator
    def _validate_decide(self, d: Decision) -> None:
        rules.refuse_decision(self._inp, self._state, self._voters, d)

    @workflow.update(name=AMEND)
    async def amend(self, a: Amendment) -> LoanApprovalState:
        """The applicant's changes to a returned application; routing restarts with them."""
        rules.refuse_amendment(self._inp, self._state, self._amendment, a)
        result = await self._check_terms(
            a.principal_minor or self._state.principal_minor, guarantor_cover=True
        )
        if not result.eligible:
            code = (
                ErrorCode.KYC_TIER_LIMIT if result.over_basic_tier else ErrorCode.LOAN_NOT_ELIGIBLE
            )
            raise refuse(code, "; ".join(result.reasons))
        rules.refuse_amendment(self._inp, self._state, self._amendment, a)
        self._amendment = a
        await workflow.wait_condition(lambda: self._amendment is None and self._idle)
        return self._state

    @amend.validator
    def _validate_amend(self, a: Amendment) -> None:
        rules.refuse_amendment(self._inp, self._state, self._amendment, a)

    @workflow.update(name=WITHDRAW)
    async def withdraw(self, w: Withdrawal) -> LoanApprovalState:
        """The applicant withdraws (any time before disbursement)."""
        if self._disburse is not None:  # validated alongside a disbursement request
            raise refuse(ErrorCode.LOAN_STATE, "the loan is being disbursed")
        self._withdrawal = w
        await workflow.wait_condition(
            lambda: (self._state.stage == Stage.WITHDRAWN and self._idle) or self._finished
        )
        return self._state

    @withdraw.validator
    def _validate_withdraw(self, w: Withdrawal) -> None:
        if self._disburse is not None:
            raise refuse(ErrorCode.LOAN_STATE, "the loan is being disbursed")
        if self._state.stage in TERMINAL_STAGES or self._withdrawal is not None or self._finished:
            raise refuse(ErrorCode.NOT_AWAITING_DECISION, f"loan is {self._state.stage.value}")
        if not set(REQUESTER_ROLES) & set(w.actor.roles):
            raise refuse(ErrorCode.FORBIDDEN, f"withdrawing needs one of {list(REQUESTER_ROLES)}")
        if not w.reason:
            raise refuse(ErrorCode.VALIDATION, "a reason is required to withdraw")

    @workflow.update(name=DISBURSE)
    async def disburse(self, req: DisburseRequest) -> LoanApprovalState:
        """Disburse the approved loan: starts the Disbursement child, then this workflow ends."""
        rules.refuse_disbursement(
            self._inp,
            self._state,
            req,
            busy=self._disburse is not None,
            ended=self._withdrawal is not None or self._finished,
        )  # again: a withdrawal may have been validated alongside
        self._disburse = req
        await workflow.wait_condition(
            lambda: self._state.disbursement_workflow_id is not None or self._finished
        )
        return self._state

    @disburse.validator
    def _validate_disburse(self, req: DisburseRequest) -> None:
        rules.refuse_disbursement(
            self._inp,
            self._state,
            req,
            busy=self._disburse is not None,
            ended=self._withdrawal is not None or self._finished,
        )
