"""LoanApproval's process: eligibility, guarantor consent, routing through the approval levels
with their SLAs, and waiting for an amendment. Part of `LoanApprovalWorkflow`
(workflows/loan_approval.py), split out by responsibility; no handlers here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

from workflows import loan_approval_rules as rules
from workflows import recipients

with workflow.unsafe.imports_passed_through():
    import email_validator  # noqa: F401  (NotificationRequest validates e-mail addresses)

    from activities.loans import LoanActivities
    from activities.notifications import NotificationActivities
    from schemas.loan_products import DEFAULT_ESCALATION, ApprovalLevel
    from schemas.loans import (
        CoverRequest,
        Decision,
        LevelProgress,
        Recipient,
        StaffRecipientsRequest,
        Stage,
        Vote,
    )
    from schemas.notifications import StaffRecipients, StaffRecipientsQuery
from workflows.loan_approval_steps import CONSENT_RULES_PATCH, LoanApprovalSteps


class LoanApprovalFlow(LoanApprovalSteps):
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
