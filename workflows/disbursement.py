"""Disbursement: an approved loan becomes money in the member's hands (a saga).

1. claim: the loan must be approved and not held by another attempt; guarantees still covered;
2. open the loan account and persist the schedule (due dates from the disbursement date);
3. post one journal: loan debited, member savings (or payment clearing) credited, and the fee;
4. lien each guarantor's savings for the guarantee;
5. external destination: pay out through the payment rail (one Idempotency-Key per attempt) and
   move clearing to the settlement bank;
6. activate the loan and e-mail the member the schedule.
A failure after the claim (a rail rejection, no rail answer by the payout deadline, a posting
refused) compensates every step already taken, in reverse: liens voided, journal reversed,
schedule dropped; the attempt ends compensated and the loan is approved again, the reason in its
trail. Staff may then start the next attempt.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, RetryState, TimeoutError

from workflows import recipients
from workflows.common import DB_ACTIVITY, business_failure

with workflow.unsafe.imports_passed_through():
    import email_validator  # noqa: F401  (NotificationRequest validates e-mail addresses)

    from activities.disbursements import DisbursementActivities
    from activities.loans import LoanActivities
    from schemas import search_attributes as sa
    from schemas.disbursements import (
        PROCESS,
        Activation,
        ClaimRequest,
        DisbursementInput,
        DisbursementPlan,
        DisbursementState,
        PayoutRequest,
        PayoutResult,
        RecordPayout,
        Stage,
        Step,
    )
    from schemas.loans import Recipient
    from schemas.notifications import NotificationRequest, NotificationResult

A = DisbursementActivities
# Compensations undo forward steps in reverse; each is a no-op when its step left nothing.
UNDO = {"liens": A.void_guarantor_liens, "journal": A.reverse_disbursement,
        "schedule": A.drop_loan_schedule}  # fmt: skip


@workflow.defn(name="Disbursement")
class DisbursementWorkflow:
    @workflow.init
    def __init__(self, inp: DisbursementInput) -> None:
        self._inp = inp
        self._state = DisbursementState(
            workflow_id=workflow.info().workflow_id,
            loan_number=inp.loan_number,
            attempt=inp.attempt,
            destination=inp.destination,
        )
        self._done: list[str] = []

    @workflow.run
    async def run(self, inp: DisbursementInput) -> DisbursementState:
        self._stage(Stage.CLAIMING)
        try:
            plan: DisbursementPlan = await self._act(
                A.claim_disbursement, ClaimRequest(workflow_id=self._state.workflow_id, inp=inp)
            )
        except ActivityError as exc:
            failure = business_failure(exc)
            if failure is None:
                raise
            self._state.status, self._state.failure_reason = "refused", failure.detail
            self._stage(Stage.REFUSED)
            return await self._finish()
        try:
            await self._forward(plan)
        except ActivityError as exc:
            reason = self._reason(exc)
            if reason is None:
                raise
            await self._compensate(reason)
            return await self._finish()
        await self._activate()
        return await self._finish()

    async def _forward(self, plan: DisbursementPlan) -> None:
        """Steps 2-5; each is marked done before it runs, so a failure inside it is undone too
        (its compensation finds nothing if it had not committed)."""
        self._stage(Stage.OPENING_ACCOUNT)
        self._done.append("schedule")
        await self._act(A.open_loan_account, self._step())
        self._stage(Stage.POSTING)
        self._done.append("journal")
        self._state.journal_id = await self._act(A.post_disbursement, self._step())
        self._stage(Stage.PLACING_LIENS)
        self._done.append("liens")
        await self._act(A.place_guarantor_liens, self._step())
        if self._inp.destination == "external":
            self._stage(Stage.PAYING_OUT)
            await self._payout(plan)

    async def _payout(self, plan: DisbursementPlan) -> None:
        inp = self._inp
        assert inp.external_account is not None
        result: PayoutResult = await workflow.execute_activity(
            "send_payout",
            PayoutRequest(
                idempotency_key=self._state.workflow_id,
                amount_minor=plan.amount_minor,
                scale=plan.scale,
                currency=plan.currency,
                account=inp.external_account,
                reference=f"{inp.loan_number} disbursement {inp.attempt}",
            ),
            result_type=PayoutResult,
            # Retried with backoff (5xx, timeouts, a lost worker) until the payout deadline.
            start_to_close_timeout=inp.payout_attempt_timeout,
            schedule_to_close_timeout=inp.payout_timeout,
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1),
                backoff_coefficient=2.0,
                maximum_interval=timedelta(minutes=1),
            ),
        )
        self._state.payout_reference = result.reference
        await self._act(
            A.record_payout, RecordPayout(step=self._step(), reference=result.reference)
        )

    def _reason(self, exc: ActivityError) -> str | None:
        """Why a forward step failed for good; None for anything that is a bug to surface."""
        failure = business_failure(exc)
        if failure is not None:
            return f"{failure.code}: {failure.detail}"
        # The payout deadline: either the last attempt timed out, or its failure is reported
        # with retry state TIMEOUT (no time left for another attempt).
        if isinstance(exc.cause, TimeoutError) or exc.retry_state == RetryState.TIMEOUT:
            return f"payout not accepted within {self._inp.payout_timeout}"
        return None

    async def _compensate(self, reason: str) -> None:
        self._state.failure_reason = reason
        self._stage(Stage.COMPENSATING)
        step = self._step(reason)
        for name in reversed(self._done):
            await self._act(UNDO[name], step)
            self._state.compensated_steps.append(name)
        await self._act(A.compensate_disbursement, step)
        self._state.status = "compensated"
        self._state.journal_id = None
        self._stage(Stage.COMPENSATED)

    async def _activate(self) -> None:
        self._stage(Stage.ACTIVATING)
        activation: Activation = await self._act(A.activate_loan, self._step())
        self._state.status = "completed"
        self._stage(Stage.COMPLETED)
        if workflow.patched(recipients.MEMBER_PATCH):
            await self._notify(recipients.member(activation.member_id), activation)
            return
        member: Recipient = await self._act(  # a run from before recipient ids
            LoanActivities.loan_member_recipient, activation.member_id
        )
        if member.email:
            await self._notify(recipients.legacy(member.email, member.name), activation)

    async def _notify(self, to: dict[str, Any], activation: Activation) -> None:
        """The member's schedule by e-mail; a refused message does not undo a disbursement."""
        try:
            await workflow.execute_activity(
                "send_notification",
                NotificationRequest(
                    process_id=self._state.workflow_id,
                    template="loan_disbursed",
                    **to,
                    context={
                        "loan_number": self._inp.loan_number,
                        "currency": self._inp.currency,
                        "destination": self._inp.destination,
                        **activation.model_dump(mode="json"),
                    },
                ),
                result_type=NotificationResult,
                **DB_ACTIVITY,
            )
        except ActivityError as exc:
            if business_failure(exc) is None:
                raise

    async def _finish(self) -> DisbursementState:
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    def _step(self, reason: str = "") -> Step:
        return Step(
            workflow_id=self._state.workflow_id, loan_number=self._inp.loan_number, reason=reason
        )

    def _stage(self, stage: Stage) -> None:
        self._state.stage = stage
        inp = self._inp
        workflow.upsert_search_attributes(
            [
                sa.PROCESS.value_set(PROCESS),
                sa.STAGE.value_set(stage.value),
                sa.BUSINESS_ID.value_set(inp.loan_number),
                sa.AMOUNT_MINOR.value_set(inp.amount_minor),
                sa.CURRENCY.value_set(inp.currency),
                *([sa.BRANCH.value_set(inp.branch)] if inp.branch else []),
                *([sa.PRODUCT.value_set(inp.product)] if inp.product else []),
            ]
        )
        workflow.set_current_details(
            f"{inp.loan_number} attempt {inp.attempt}: {stage.value}"
            + (f": {self._state.failure_reason}" if self._state.failure_reason else "")
        )

    async def _act(self, method: Any, arg: Any) -> Any:
        return await workflow.execute_activity_method(method, arg, **DB_ACTIVITY)

    @workflow.query(name="state")
    def state(self) -> DisbursementState:
        return self._state
