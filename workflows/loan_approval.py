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

from temporalio import workflow

from workflows import loan_approval_rules as rules
from workflows.common import refuse
from workflows.loan_approval_flow import LoanApprovalFlow
from workflows.loan_approval_steps import (
    AMEND,
    CONSENT_RULES_PATCH,
    DECIDE,
    DISBURSE,
    GUARANTOR_ANSWER,
    GUARANTOR_CONSENT,
    INITIAL_OUTCOME,
    WITHDRAW,
)

with workflow.unsafe.imports_passed_through():
    import email_validator  # noqa: F401  (NotificationRequest validates e-mail addresses)

    from schemas.disbursements import (
        DisburseRequest,
    )
    from schemas.errors import ErrorCode
    from schemas.loans import (
        REQUESTER_ROLES,
        TERMINAL_STAGES,
        Amendment,
        Decision,
        GuarantorAnswer,
        LoanApprovalState,
        LoanInput,
        LoanState,
        Stage,
        Withdrawal,
    )

__all__ = [
    "AMEND",
    "CONSENT_RULES_PATCH",
    "DECIDE",
    "DISBURSE",
    "GUARANTOR_ANSWER",
    "GUARANTOR_CONSENT",
    "INITIAL_OUTCOME",
    "WITHDRAW",
    "LoanApprovalWorkflow",
]


@workflow.defn(name="LoanApproval")
class LoanApprovalWorkflow(LoanApprovalFlow):
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
