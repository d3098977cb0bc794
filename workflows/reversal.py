"""Reversal: maker-checker reversal of a posted journal by a mirror journal linked to it.

The first step checks the journal (exists, not a reversal, not reversed, period open, a kind this
process reverses, accounts open) and, in the same transaction, holds what the original credited
to no-overdraft accounts, so the funds cannot be spent while the case waits. Approvers decide by
Workflow Updates whose validator is the authority: never the requester, never twice, a role of
the amount's tier, and an overdraft override only from a higher role. Enough approvals post the
mirror journal (voiding the holds in the same transaction); a rejection or the approval timeout
voids the holds. Affected members are notified and every step lands in the case file.

A loan repayment or disbursement is reversed the same way; the activity that posts the mirror
also adjusts the loan book in its transaction (activities/loan_reversal.py): later repayments
re-applied as if the reversed one never happened, or the loan returned to approved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.common import DB_ACTIVITY, NOTIFY_ACTIVITY, BusinessFailure, business_failure, refuse

with workflow.unsafe.imports_passed_through():
    import email_validator  # noqa: F401  (NotificationRequest validates e-mail addresses)

    from activities.reversals import ReversalActivities
    from domain.money import to_major
    from schemas import search_attributes as sa
    from schemas.errors import ErrorCode
    from schemas.notifications import NotificationResult
    from schemas.reversals import (
        TERMINAL_STAGES,
        Decision,
        DecisionInput,
        EventRecord,
        ExecuteRequest,
        HistoryEntry,
        NoticeRequest,
        PrepareRequest,
        ReleaseRequest,
        ReversalInput,
        ReversalPlan,
        ReversalState,
        Stage,
        tier_for,
    )

A = TypeVar("A")
R = TypeVar("R")

INITIAL_OUTCOME = "initial_outcome"
DECIDE = "decide"
SEND_NOTIFICATION = "send_notification"  # the notifications process's activity, by name


@workflow.defn(name="Reversal")
class ReversalWorkflow:
    @workflow.init
    def __init__(self, inp: ReversalInput) -> None:
        self._inp = inp
        self._id = workflow.info().workflow_id
        self._outcome: bool | None = None  # True approved, False rejected
        self._state = ReversalState(
            reversal_id=self._id,
            journal_id=inp.journal_id,
            request_id=inp.request_id,
            stage=Stage.VALIDATING,
            reason_code=inp.reason_code,
            reason=inp.reason,
            requested_by=inp.requested_by,
        )

    @workflow.run
    async def run(self, inp: ReversalInput) -> ReversalState:
        self._enter(Stage.VALIDATING)
        await self._event("requested", inp.requested_by, f"{inp.reason_code}: {inp.reason}")
        try:
            plan = await self._act(
                ReversalActivities.prepare_reversal,
                PrepareRequest(
                    reversal_id=self._id, request_id=inp.request_id, journal_id=inp.journal_id
                ),
            )
        except BusinessFailure as failure:
            await self._finish(Stage.REFUSED, "refused", failure.code, failure.detail)
            return self._state
        self._adopt(plan)
        if plan.error:
            await self._finish(Stage.REFUSED, "refused", plan.error, plan.error_detail or "")
            return self._state
        await self._await_decision()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    def _adopt(self, plan: ReversalPlan) -> None:
        s = self._state
        s.kind, s.amount_minor, s.currency, s.scale = (
            plan.kind,
            plan.amount_minor,
            plan.currency,
            plan.scale,
        )
        s.checks, s.holds, s.shortfalls = plan.checks, plan.holds, plan.shortfalls
        s.needs_override = bool(plan.shortfalls)
        s.tier = tier_for(self._inp.tiers, Decimal(to_major(plan.amount_minor, plan.scale)))
        workflow.upsert_search_attributes(
            [
                sa.BRANCH.value_set(plan.branch),
                sa.AMOUNT_MINOR.value_set(plan.amount_minor),
                sa.CURRENCY.value_set(plan.currency),
                sa.PRODUCT.value_set(plan.kind),
                sa.RISK.value_set("overdraft" if s.needs_override else "normal"),
            ]
        )

    async def _await_decision(self) -> None:
        s = self._state
        assert s.tier is not None
        s.expires_at = workflow.now() + self._inp.approval_timeout
        roles = sorted(
            set(s.tier.roles) | (set(self._inp.override_roles) if s.needs_override else set())
        )
        held = ", ".join(f"{h.account} {to_major(h.amount_minor, s.scale or 0)}" for h in s.holds)
        await self._event("held", None, held or "nothing to hold")
        self._enter(Stage.AWAITING_APPROVAL, role=self._waiting_role(), note=f"roles {roles}")
        try:
            await workflow.wait_condition(
                lambda: self._outcome is not None, timeout=self._inp.approval_timeout
            )
        except TimeoutError:
            await self._release("approval timed out")
            await self._finish(Stage.EXPIRED, "expired", None, "no decision before the timeout")
            return
        if not self._outcome:
            last = s.decisions[-1]
            await self._release(f"rejected by {last.approver}: {last.reason}")
            await self._finish(Stage.REJECTED, "rejected", None, last.reason, actor=last.approver)
            return
        await self._reverse()

    async def _reverse(self) -> None:
        s = self._state
        self._enter(Stage.REVERSING)
        try:
            result = await self._act(
                ReversalActivities.execute_reversal,
                ExecuteRequest(
                    reversal_id=self._id,
                    journal_id=s.journal_id,
                    hold_ids=[h.hold_id for h in s.holds],
                    value_date=workflow.now().date(),
                    description=f"Reversal of {s.journal_id} ({s.reason_code}): {s.reason}"[:500],
                    override=any(d.override_overdraft for d in s.decisions),
                ),
            )
        except BusinessFailure as failure:
            await self._release(f"reversal refused: {failure.code}")
            await self._finish(Stage.DECLINED, "declined", failure.code, failure.detail)
            return
        s.reversal_journal_id, s.cover_journal_id = (
            result.reversal_journal_id,
            result.cover_journal_id,
        )
        # Kind-specific steps (loan re-allocation, disbursement undo) go here, after the mirror.
        await self._notify()
        await self._finish(Stage.COMPLETED, "completed", None, f"posted {s.reversal_journal_id}")

    async def _notify(self) -> None:
        s = self._state
        assert s.reversal_journal_id is not None
        self._enter(Stage.NOTIFYING)
        notices = await self._act(
            ReversalActivities.reversal_notices,
            NoticeRequest(
                reversal_id=self._id,
                journal_id=s.journal_id,
                reversal_journal_id=s.reversal_journal_id,
                reason_code=s.reason_code,
            ),
        )
        for notice in notices:
            try:
                await workflow.execute_activity(
                    SEND_NOTIFICATION,
                    notice,
                    result_type=NotificationResult,
                    **NOTIFY_ACTIVITY,
                )
                s.notified += 1
            except ActivityError as exc:
                s.notification_error = str(exc.cause or exc)[:500]

    async def _release(self, reason: str) -> None:
        if not self._state.holds:
            return
        self._enter(Stage.RELEASING_HOLD)
        await self._act(
            ReversalActivities.release_reversal_holds,
            ReleaseRequest(hold_ids=[h.hold_id for h in self._state.holds], reason=reason[:500]),
        )

    async def _finish(
        self, stage: Stage, event: str, code: str | None, detail: str, actor: str | None = None
    ) -> None:
        self._state.error, self._state.error_detail = code, detail if code else None
        await self._event(event, actor, f"{code}: {detail}" if code else detail)
        self._enter(stage, detail)

    async def _event(self, event: str, actor: str | None, detail: str, key: str = "") -> None:
        await self._act(
            ReversalActivities.record_reversal_event,
            EventRecord(
                reversal_id=self._id,
                request_id=self._inp.request_id,
                journal_id=self._inp.journal_id,
                event=event,
                key=f"{self._inp.request_id}:{key or event}",
                actor=actor,
                detail=detail,
            ),
        )

    async def _act(self, activity: Callable[[ReversalActivities, A], Awaitable[R]], arg: A) -> R:
        """Run an activity; its typed business failure becomes a BusinessFailure."""
        try:
            return await workflow.execute_activity_method(activity, arg, **DB_ACTIVITY)
        except ActivityError as exc:
            failure = business_failure(exc)
            if failure is None:
                raise
            raise failure from exc

    def _waiting_role(self) -> str:
        s = self._state
        assert s.tier is not None
        if s.needs_override and not any(d.override_overdraft for d in s.decisions):
            return sorted(self._inp.override_roles)[0]
        return sorted(s.tier.roles)[0]

    def _enter(self, stage: Stage, note: str = "", role: str | None = None) -> None:
        s = self._state
        s.stage, s.assigned_role = stage, role
        s.history.append(HistoryEntry(at=workflow.now(), stage=stage, note=note))
        workflow.upsert_search_attributes(
            [
                sa.STAGE.value_set(stage.value),
                sa.ASSIGNED_ROLE.value_set(role) if role else sa.ASSIGNED_ROLE.value_unset(),
            ]
        )
        amount = (
            f"{to_major(s.amount_minor, s.scale or 0)} {s.currency} "
            if s.amount_minor is not None
            else ""
        )
        waiting = f", waiting for a {role}" if role else ""
        workflow.set_current_details(
            f"reversal of {s.kind or 'journal'} {amount}: **{stage.value}**{waiting}"
            + (f" ({note})" if note else "")
        )

    @workflow.query(name="state")
    def state(self) -> ReversalState:
        return self._state

    @workflow.update(name=INITIAL_OUTCOME)
    async def initial_outcome(self) -> ReversalState:
        """Wait until the case is refused or waiting for approvers."""
        await workflow.wait_condition(
            lambda: (
                self._state.stage in TERMINAL_STAGES or self._state.stage == Stage.AWAITING_APPROVAL
            )
        )
        return self._state

    @workflow.update(name=DECIDE)
    async def decide(self, decision: DecisionInput) -> ReversalState:
        """Approve or reject. Returns at once while more approvals are needed, else once the
        ledger reflects the outcome (the mirror posted, or the holds released)."""
        s = self._state
        s.decisions.append(
            Decision(
                approver_id=decision.approver_id,
                approver=decision.approver,
                approve=decision.approve,
                override_overdraft=decision.override_overdraft,
                reason=decision.reason,
                at=workflow.now(),
            )
        )
        assert s.tier is not None
        # Decide the outcome before the first await, so a concurrent decision's validator
        # already sees it.
        approvals = sum(d.approve for d in s.decisions)
        if not decision.approve:
            self._outcome = False
        elif approvals >= s.tier.approvers:
            self._outcome = True
        if decision.approve:
            override = " with overdraft override" if decision.override_overdraft else ""
            await self._event(
                "approved",
                decision.approver,
                f"approved{override}: {decision.reason}",
                key=f"approved:{decision.approver_id}",
            )
        if self._outcome is None:
            note = f"{approvals} of {s.tier.approvers} approvals"
            self._enter(Stage.AWAITING_APPROVAL, note, role=self._waiting_role())
            return s
        # Answer once the ledger reflects the outcome; member e-mails follow (a mail outage is
        # retried for up to a day and must not keep the approver waiting).
        await workflow.wait_condition(
            lambda: s.stage in TERMINAL_STAGES or s.reversal_journal_id is not None
        )
        return s

    @decide.validator
    def _validate_decide(self, decision: DecisionInput) -> None:
        # Runs before anything is written to history: a refused decision leaves no trace but
        # the caller's error.
        s = self._state
        if s.stage != Stage.AWAITING_APPROVAL or self._outcome is not None or s.tier is None:
            raise refuse(
                ErrorCode.NOT_AWAITING_DECISION,
                f"reversal is {s.stage.value}, not awaiting a decision",
            )
        if decision.approver_id == self._inp.requested_by_id:
            raise refuse(ErrorCode.FOUR_EYES, "four-eyes: the requester cannot decide")
        if any(d.approver_id == decision.approver_id for d in s.decisions):
            raise refuse(ErrorCode.DUPLICATE, "each approver decides once")
        roles = set(decision.approver_roles)
        may_override = bool(roles & set(self._inp.override_roles))
        allowed = set(s.tier.roles) | (set(self._inp.override_roles) if s.needs_override else set())
        if not roles & allowed:
            raise refuse(
                ErrorCode.FORBIDDEN, f"a decision needs one of the roles {sorted(allowed)}"
            )
        if decision.override_overdraft and not may_override:
            raise refuse(
                ErrorCode.FORBIDDEN,
                f"an overdraft override needs one of the roles {sorted(self._inp.override_roles)}",
            )
        if not decision.approve or not s.needs_override:
            return
        overridden = decision.override_overdraft or any(d.override_overdraft for d in s.decisions)
        completes = sum(d.approve for d in s.decisions) + 1 >= s.tier.approvers
        if completes and not overridden:
            shortfall = ", ".join(s.account for s in s.shortfalls)
            raise refuse(
                ErrorCode.OVERRIDE_REQUIRED,
                f"the reversal overdraws {shortfall}: the approval that completes it needs an "
                f"overdraft override by one of {sorted(self._inp.override_roles)}",
            )
