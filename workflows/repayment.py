"""LoanRepayment: one repayment of an active loan, from the member's savings or in cash.

1. `post_loan_repayment` allocates the amount (penalties, fees, interest, principal; overdue
   installments oldest first, then the current one, then in advance) and posts it as one journal
   in one transaction; an amount reaching the payoff quote closes the loan (interest not yet
   earned is waived), voids the guarantors' liens, and an excess paid in cash goes to savings.
   A refusal (loan not active, insufficient savings, a back-dated value date) ends it declined,
   with nothing applied.
2. The member is e-mailed the receipt, and a closing notice when the loan closed.
The API waits on the `outcome` update, which answers as soon as the posting is done or refused,
so a slow e-mail provider never holds up the teller.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows import recipients
from workflows.common import DB_ACTIVITY, NOTIFY_ACTIVITY, BusinessFailure, business_failure

with workflow.unsafe.imports_passed_through():
    import email_validator  # noqa: F401  (NotificationRequest validates e-mail addresses)

    from activities.loans import LoanActivities
    from activities.repayments import RepaymentActivities
    from domain.money import to_major
    from schemas import search_attributes as sa
    from schemas.loans import Recipient
    from schemas.notifications import NotificationRequest, NotificationResult
    from schemas.repayments import (
        TERMINAL_STAGES,
        RepaymentInput,
        RepaymentRequest,
        RepaymentResult,
        RepaymentState,
        Stage,
    )

# Update and query names, shared with the API.
OUTCOME = "outcome"
STATE = "state"


@workflow.defn(name="LoanRepayment")
class LoanRepaymentWorkflow:
    """Posts one loan repayment, closes the loan when it is paid off, and tells the member."""

    @workflow.init
    def __init__(self, inp: RepaymentInput) -> None:
        self._inp = inp
        self._state = RepaymentState(
            workflow_id=workflow.info().workflow_id, loan_number=inp.loan_number
        )

    @workflow.run
    async def run(self, inp: RepaymentInput) -> RepaymentState:
        self._enter(Stage.POSTING)
        try:
            result = await self._post()
        except BusinessFailure as failure:
            self._state.error, self._state.error_detail = failure.code, failure.detail
            self._enter(Stage.DECLINED, failure.detail)
        else:
            self._state.result = result
            self._enter(Stage.NOTIFYING)
            await self._notify_member(result)
            self._enter(Stage.COMPLETED)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    async def _post(self) -> RepaymentResult:
        inp = self._inp
        try:
            return await workflow.execute_activity_method(
                RepaymentActivities.post_loan_repayment,
                RepaymentRequest(
                    workflow_id=workflow.info().workflow_id,
                    loan_number=inp.loan_number,
                    amount_minor=inp.amount_minor,
                    source=inp.source,
                    value_date=inp.value_date,
                    at=workflow.now(),
                    actor=inp.requested_by,
                    actor_id=inp.requested_by_id,
                ),
                **DB_ACTIVITY,
            )
        except ActivityError as exc:
            failure = business_failure(exc)
            if failure is None:
                raise
            raise failure from exc

    async def _notify_member(self, result: RepaymentResult) -> None:
        to: dict[str, Any]
        if workflow.patched(recipients.MEMBER_PATCH):
            to = recipients.member(self._inp.member_id)
        else:  # a run from before recipient ids
            member: Recipient = await workflow.execute_activity_method(
                LoanActivities.loan_member_recipient, self._inp.member_id, **DB_ACTIVITY
            )
            if not member.email:
                return  # nobody to tell; the repayment stands
            to = recipients.legacy(member.email, member.name)
        context = {
            "loan_number": result.loan_number,
            "amount": self._money(result.amount_minor),
            "value_date": result.value_date.isoformat(),
            "principal": self._money(result.principal_minor),
            "interest": self._money(result.interest_minor),
            "fees": self._money(result.fee_minor),
            "penalties": self._money(result.penalty_minor),
            "overpayment": self._money(result.overpayment_minor),
            "outstanding": self._money(result.outstanding_minor),
        }
        await self._send("loan_repayment_received", to, context)
        if result.closed:
            await self._send("loan_closed", to, {**context, "state": result.state})

    async def _send(self, template: str, to: dict[str, Any], context: dict[str, Any]) -> None:
        """A message the notification service refuses for good is not worth failing a posted
        repayment over: the receipt is on the statement either way."""
        try:
            await workflow.execute_activity(
                "send_notification",
                NotificationRequest(
                    process_id=workflow.info().workflow_id,
                    template=template,
                    **to,
                    context=context,
                ),
                result_type=NotificationResult,
                **NOTIFY_ACTIVITY,
            )
        except ActivityError as exc:
            if business_failure(exc) is None:
                raise
            workflow.logger.warning("notification %s refused: %s", template, exc.cause)

    def _money(self, minor: int) -> str:
        return f"{to_major(minor, self._inp.scale)} {self._inp.currency}"

    def _enter(self, stage: Stage, note: str = "") -> None:
        self._state.stage = stage
        workflow.upsert_search_attributes([sa.STAGE.value_set(stage.value)])
        workflow.set_current_details(
            f"{self._inp.loan_number}: repayment of {self._money(self._inp.amount_minor)} "
            f"({self._inp.source}): **{stage.value}**" + (f" ({note})" if note else "")
        )

    @workflow.query(name=STATE)
    def state(self) -> RepaymentState:
        return self._state

    @workflow.update(name=OUTCOME)
    async def outcome(self) -> RepaymentState:
        """Answer once the repayment is posted (or refused); the e-mails follow on their own."""
        await workflow.wait_condition(
            lambda: self._state.posted or self._state.stage in TERMINAL_STAGES
        )
        return self._state
