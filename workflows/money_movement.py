"""MoneyMovement: a deposit, withdrawal or transfer between accounts.

Small amounts post at once. A withdrawal or transfer above the institution's threshold first
places a hold on the funds, then waits for a supervisor's decision (a Workflow Update whose
validator enforces four-eyes: the requester never approves). Approval posts the hold, rejection
or the approval timeout voids it. Posting and holding check, in the ledger's transaction, that a
member who is not KYC-verified stays within the basic tier's daily limit (KycTierLimit). Every
ledger write is idempotent on an id derived from the workflow id and the step, so a retry, a
reset or a worker crash never posts twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.common import DB_ACTIVITY, BusinessFailure, business_failure

with workflow.unsafe.imports_passed_through():
    from activities.ledger import LedgerActivities
    from activities.movements import MovementActivities
    from domain.money import to_major
    from schemas import search_attributes as sa
    from schemas.errors import ErrorCode
    from schemas.ledger import (
        HoldRequest,
        JournalRequest,
        PostHoldRequest,
        PostingLine,
        VoidHoldRequest,
    )
    from schemas.movements import (
        APPROVER_ROLES,
        TERMINAL_STAGES,
        DecisionInput,
        HistoryEntry,
        MovementHold,
        MovementInput,
        MovementState,
        Stage,
    )

A = TypeVar("A")
R = TypeVar("R")

# Update names, shared with the API (which calls them by name: see api/routes/movements.py).
INITIAL_OUTCOME = "initial_outcome"
DECIDE = "decide"
# Runs from here on post and hold through MovementActivities (the basic KYC tier's check in the
# ledger's transaction); runs started before replay with the plain ledger activities.
KYC_TIER_PATCH = "kyc-basic-tier"
# Runs from here on post a movement that needs no decision as a local activity (see _ledger);
# runs started before replay with a scheduled one.
LOCAL_POSTING_PATCH = "local-posting"
# Runs from here on take both changes above under this one marker instead of one marker each, and
# upsert only the search attributes that change (a deposit starts at stage `posting`, which the
# API sets at start). Each marker and each upsert is an event the server writes and the worker
# sends; a deposit had two of each beyond its posting (bench/ledger.py). Runs started before
# replay as they ran.
ONE_MARKER_PATCH = "one-marker"


@workflow.defn(name="MoneyMovement")
class MoneyMovementWorkflow:
    @workflow.init
    def __init__(self, inp: MovementInput) -> None:
        self._inp = inp
        self._decision: DecisionInput | None = None
        self._state = MovementState.initial(inp)
        self._one_marker = False

    @workflow.run
    async def run(self, inp: MovementInput) -> MovementState:
        self._one_marker = workflow.patched(ONE_MARKER_PATCH)
        tier_checked = self._one_marker or workflow.patched(KYC_TIER_PATCH)
        try:
            if self._state.needs_approval:
                await self._with_approval(tier_checked)
            else:
                self._enter(Stage.POSTING)
                if tier_checked:
                    journal = await self._ledger(
                        MovementActivities.post_movement,
                        self._journal(),
                        local=self._one_marker or workflow.patched(LOCAL_POSTING_PATCH),
                    )
                else:
                    journal = await self._ledger(LedgerActivities.post_journal, self._journal())
                self._state.journal_id = journal.journal_id
                self._enter(Stage.COMPLETED)
        except BusinessFailure as failure:
            self._state.error, self._state.error_detail = failure.code, failure.detail
            self._enter(Stage.DECLINED, failure.detail)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    async def _with_approval(self, tier_checked: bool) -> None:
        inp = self._inp
        hold_id = f"{workflow.info().workflow_id}:hold"
        self._enter(Stage.PLACING_HOLD)
        hold = HoldRequest(
            hold_id=hold_id,
            debit_account_id=inp.debit_account_id,
            credit_account_id=inp.credit_account_id,
            amount_minor=inp.amount_minor,
            currency=inp.currency,
            description=self._description(),
            process_id=workflow.info().workflow_id,
        )
        if tier_checked:
            await self._ledger(
                MovementActivities.hold_movement,
                MovementHold(kind=inp.kind, value_date=inp.value_date, hold=hold),
            )
        else:
            await self._ledger(LedgerActivities.place_hold, hold)
        self._state.hold_id = hold_id
        self._state.expires_at = workflow.now() + inp.approval_timeout
        self._enter(Stage.AWAITING_APPROVAL, role=sorted(APPROVER_ROLES)[0])
        try:
            await workflow.wait_condition(
                lambda: self._decision is not None, timeout=inp.approval_timeout
            )
        except TimeoutError:
            await self._void(hold_id, "approval timed out")
            self._enter(Stage.EXPIRED, "no decision before the approval timeout")
            return
        decision = self._decision
        assert decision is not None
        self._state.decided_by = decision.approver
        self._state.decision_reason = decision.reason
        if not decision.approve:
            await self._void(hold_id, f"rejected by {decision.approver}: {decision.reason}")
            self._enter(Stage.REJECTED, decision.reason)
            return
        self._enter(Stage.POSTING_HOLD)
        journal = await self._ledger(
            LedgerActivities.post_hold,
            PostHoldRequest(
                hold_id=hold_id,
                journal_id=f"{workflow.info().workflow_id}:post",
                kind=inp.kind,
                value_date=inp.value_date,
                description=self._description(),
            ),
        )
        self._state.journal_id = journal.journal_id
        self._enter(Stage.COMPLETED, f"approved by {decision.approver}")

    async def _void(self, hold_id: str, reason: str) -> None:
        self._enter(Stage.VOIDING_HOLD)
        await self._ledger(
            LedgerActivities.void_hold, VoidHoldRequest(hold_id=hold_id, reason=reason)
        )

    def _journal(self) -> JournalRequest:
        inp = self._inp
        return JournalRequest(
            journal_id=f"{workflow.info().workflow_id}:post",
            kind=inp.kind,
            value_date=inp.value_date,
            description=self._description(),
            process_id=workflow.info().workflow_id,
            metadata={"movement_id": inp.movement_id, "requested_by": inp.requested_by},
            postings=[
                PostingLine(
                    debit_account_id=inp.debit_account_id,
                    credit_account_id=inp.credit_account_id,
                    amount_minor=inp.amount_minor,
                    currency=inp.currency,
                )
            ],
        )

    def _description(self) -> str:
        inp = self._inp
        return inp.narrative or f"{inp.kind} {inp.debit_account} -> {inp.credit_account}"

    async def _ledger(
        self, activity: Callable[[Any, A], Awaitable[R]], arg: A, *, local: bool = False
    ) -> R:
        """Run a ledger activity; its typed business failure ends the movement as declined.

        `local`: as a local activity, inside the workflow task that asked for it. A posting is
        one transaction of milliseconds; run locally, a deposit is one workflow task instead of
        three with an activity task between them (no activity events, no dispatch to another
        poll), and the Temporal server's share was half the CPU of a deposit. A worker that dies
        meanwhile fails the workflow task; the next worker runs the activity again under the
        same journal id, which the ledger writes once."""
        try:
            if local:
                return await workflow.execute_local_activity_method(activity, arg, **DB_ACTIVITY)
            return await workflow.execute_activity_method(activity, arg, **DB_ACTIVITY)
        except ActivityError as exc:
            failure = business_failure(exc)
            if failure is None:
                raise
            raise failure from exc
        except ApplicationError as exc:  # a local activity's failure arrives unwrapped
            if not (exc.non_retryable and exc.type):
                raise
            raise BusinessFailure(exc.type, exc.message) from exc

    def _enter(self, stage: Stage, note: str = "", role: str | None = None) -> None:
        self._state.stage = stage
        self._state.assigned_role = role
        self._state.history.append(HistoryEntry(at=workflow.now(), stage=stage, note=note))
        updates = [
            sa.STAGE.value_set(stage.value),
            sa.ASSIGNED_ROLE.value_set(role) if role else sa.ASSIGNED_ROLE.value_unset(),
        ]
        if self._one_marker:
            now = workflow.info().typed_search_attributes
            updates = [u for u in updates if now.get(u.key) != u.value]
        if updates:
            workflow.upsert_search_attributes(updates)
        waiting = f", waiting for a {role}" if role else ""
        workflow.set_current_details(
            f"{self._inp.kind} of {to_major(self._inp.amount_minor, self._inp.scale)} "
            f"{self._inp.currency}: "
            f"**{stage.value}**{waiting}" + (f" ({note})" if note else "")
        )

    @workflow.query(name="state")
    def state(self) -> MovementState:
        return self._state

    @workflow.update(name=INITIAL_OUTCOME)
    async def initial_outcome(self) -> MovementState:
        """Wait until the movement has posted, been declined, or is waiting for a supervisor."""
        await workflow.wait_condition(
            lambda: (
                self._state.stage in TERMINAL_STAGES or self._state.stage == Stage.AWAITING_APPROVAL
            )
        )
        return self._state

    @workflow.update(name=DECIDE)
    async def decide(self, decision: DecisionInput) -> MovementState:
        """A supervisor approves or rejects; returns the state once the ledger reflects it."""
        self._decision = decision
        await workflow.wait_condition(lambda: self._state.stage in TERMINAL_STAGES)
        return self._state

    @decide.validator
    def _validate_decide(self, decision: DecisionInput) -> None:
        # Runs before anything is written to history: a refused decision leaves no trace but
        # the caller's error.
        if self._state.stage != Stage.AWAITING_APPROVAL or self._decision is not None:
            raise ApplicationError(
                f"movement is {self._state.stage.value}, not awaiting a decision",
                type=ErrorCode.NOT_AWAITING_DECISION.value,
                non_retryable=True,
            )
        if decision.approver_id == self._inp.requested_by_id:
            raise ApplicationError(
                "four-eyes: the requester cannot decide their own movement",
                type=ErrorCode.FOUR_EYES.value,
                non_retryable=True,
            )
        if not APPROVER_ROLES.intersection(decision.approver_roles):
            raise ApplicationError(
                f"a decision needs one of the roles {sorted(APPROVER_ROLES)}",
                type=ErrorCode.FORBIDDEN.value,
                non_retryable=True,
            )
