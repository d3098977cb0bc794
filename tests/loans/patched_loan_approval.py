"""A test branch of LoanApproval's code (tests/loans/test_patched_deploy.py): after approval it
records one more loan event. A module of its own, as a workflow module must be: the sandbox
re-imports it, and it imports nothing but workflow code."""

from __future__ import annotations

from temporalio import workflow

from workflows.loan_approval import LoanApprovalWorkflow

with workflow.unsafe.imports_passed_through():
    from schemas.loans import LoanApprovalState, LoanInput

DEMO_PATCH = "approval-confirmed-event"
CONFIRMED = "approval_confirmed"


@workflow.defn(name="LoanApproval")
class PatchedLoanApproval(LoanApprovalWorkflow):
    """The new code, as the rule says to write it: the new step behind `workflow.patched`."""

    @workflow.run
    async def run(self, inp: LoanInput) -> LoanApprovalState:
        return await super().run(inp)

    async def _approved(self) -> None:
        if workflow.patched(DEMO_PATCH):
            await self._record(CONFIRMED, reason="four-eyes decision recorded")
        await super()._approved()


@workflow.defn(name="LoanApproval")
class UnpatchedLoanApproval(LoanApprovalWorkflow):
    """The same change without the patch: what the rule forbids."""

    @workflow.run
    async def run(self, inp: LoanInput) -> LoanApprovalState:
        return await super().run(inp)

    async def _approved(self) -> None:
        await self._record(CONFIRMED, reason="four-eyes decision recorded")
        await super()._approved()
