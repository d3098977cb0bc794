"""Loan applications: what the API resolves before LoanApproval starts, and the activities the
workflow calls (eligibility and guarantee checks, the trail, who to notify).

Savings figures come from the member's open savings accounts in the product's currency:
- balance: posted credits minus posted debits;
- free savings: balance less pending holds (which include the liens of disbursed loans they
  guarantee), less what the member pledged on other loans still pending or approved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.errors import transaction
from activities.tables import (
    LedgerAccount,
    Loan,
    LoanEvent,
    LoanGuarantor,
    Member,
    StaffRole,
    StaffUser,
)
from domain.money import percent_of, times, to_major
from schemas.kyc_tier import BasicTierLimit, minor_units
from schemas.loan_products import ProductSnapshot, plain
from schemas.loans import (
    BASIC_TIER_RULE,
    CoverRequest,
    CoverResult,
    EligibilityCheck,
    Guarantor,
    LoanEventRecord,
    Recipient,
    StaffRecipientsRequest,
    TermsCheckRequest,
    TermsCheckResult,
)
from schemas.settings import Settings

# Loans whose guarantees bind the guarantor's savings as a pledge. Once a loan is disbursed the
# guarantee is a lien (a pending hold), which `savings` already takes off: counting the active
# loan's pledge as well would take the same guarantee off twice.
BINDING_STATES = ("submitted_and_pending_approval", "approved")


def share(principal_minor: int, pct: Decimal) -> int:
    """`pct` percent of the principal, rounded up: a rule is never met by a rounding."""
    return percent_of(principal_minor, pct, ROUND_CEILING)


async def savings(session: AsyncSession, member_id: int, currency: str) -> tuple[int, int]:
    """(balance, available) of the member's open savings accounts in `currency`."""
    a = LedgerAccount
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(a.credits_posted_minor - a.debits_posted_minor), 0),
                func.coalesce(func.sum(a.debits_pending_minor), 0),
            ).where(
                a.member_id == member_id,
                a.kind == "savings",
                a.currency == currency,
                a.status == "open",
            )
        )
    ).one()
    balance, pending = int(row[0]), int(row[1])
    return balance, balance - pending


async def pledged(session: AsyncSession, member_id: int, currency: str, except_loan: int) -> int:
    """What the member already guarantees on other binding loans."""
    total = await session.scalar(
        select(func.coalesce(func.sum(LoanGuarantor.amount_minor), 0))
        .join(Loan, Loan.id == LoanGuarantor.loan_id)
        .where(
            LoanGuarantor.member_id == member_id,
            LoanGuarantor.status == "accepted",
            LoanGuarantor.loan_id != except_loan,
            Loan.currency == currency,
            Loan.state.in_(BINDING_STATES),
        )
    )
    return int(total or 0)


async def free_savings(session: AsyncSession, member_id: int, currency: str, loan_id: int) -> int:
    _, available = await savings(session, member_id, currency)
    return available - await pledged(session, member_id, currency, loan_id)


def basic_tier_check(
    limits: dict[str, BasicTierLimit], p: ProductSnapshot, principal_minor: int
) -> EligibilityCheck:
    """A member who is not KYC-verified borrows at most the basic tier's principal in the
    product's currency (none, where the institution set no limit for it)."""
    limit = limits.get(p.currency)
    allowed = minor_units(limit.loan_principal, p.scale) if limit else 0
    asked = f"{to_major(principal_minor, p.scale)} {p.currency}"
    return EligibilityCheck(
        rule=BASIC_TIER_RULE,
        passed=principal_minor <= allowed,
        detail=f"not KYC-verified: principal {asked} against the basic tier's at most "
        f"{to_major(allowed, p.scale)} {p.currency}"
        if limit
        else f"not KYC-verified: the basic tier has no {p.currency} limit; only verified "
        "members borrow in it",
    )


async def check_terms(
    session: AsyncSession, req: TermsCheckRequest, limits: dict[str, BasicTierLimit]
) -> TermsCheckResult:
    """Every eligibility and guarantee rule of the product, each with its reason."""
    p, rules = req.product, req.product.eligibility
    member = await session.get(Member, req.member_id)
    assert member is not None, "the API resolved this member"
    checks: list[EligibilityCheck] = []

    def add(rule: str, passed: bool, detail: str) -> None:
        checks.append(EligibilityCheck(rule=rule, passed=passed, detail=detail))

    def money(amount: int) -> str:
        return f"{to_major(amount, p.scale)} {p.currency}"

    add("member_active", member.status == "active", f"membership is {member.status}")
    if rules.require_kyc_verified:
        add("kyc_verified", member.kyc_status == "verified", f"KYC is {member.kyc_status}")
    if member.kyc_status != "verified":
        checks.append(basic_tier_check(limits, p, req.principal_minor))
    age = (datetime.now(UTC).date() - member.created_at.date()).days
    if rules.min_membership_days:
        add(
            "membership_age",
            age >= rules.min_membership_days,
            f"member for {age} days; the product needs {rules.min_membership_days}",
        )
    balance, _ = await savings(session, member.id, p.currency)
    if rules.max_savings_multiple is not None:
        limit = times(balance, rules.max_savings_multiple, ROUND_DOWN)
        add(
            "savings_multiple",
            req.principal_minor <= limit,
            f"principal {money(req.principal_minor)} against at most "
            f"{plain(rules.max_savings_multiple)} x savings {money(balance)} = {money(limit)}",
        )
    if rules.no_loan_in_arrears:
        in_arrears = await session.scalar(
            select(func.count())
            .select_from(Loan)
            .where(
                Loan.member_id == member.id,
                Loan.state == "active",
                Loan.overdue_since.is_not(None),
            )
        )
        add("no_loan_in_arrears", not in_arrears, f"{in_arrears or 0} loan(s) in arrears")
    checks += await _guarantee_checks(session, req, p)
    return TermsCheckResult(checks=checks)


async def _guarantee_checks(
    session: AsyncSession, req: TermsCheckRequest, p: ProductSnapshot
) -> list[EligibilityCheck]:
    checks: list[EligibilityCheck] = []
    scale, cur = p.scale, p.currency
    own_needed = share(req.principal_minor, p.guarantee.own_savings_pct)
    if own_needed:
        own = await free_savings(session, req.member_id, cur, req.loan_id)
        checks.append(
            EligibilityCheck(
                rule="own_savings",
                passed=own >= own_needed,
                detail=f"free savings {to_major(own, scale)} {cur}; the product needs "
                f"{plain(p.guarantee.own_savings_pct)}% = {to_major(own_needed, scale)} {cur}",
            )
        )
    needed = share(req.principal_minor, p.guarantee.min_guaranteed_by_others_pct)
    if needed:
        offered = sum(g.amount_minor for g in req.guarantors)
        checks.append(
            EligibilityCheck(
                rule="guarantee_share",
                passed=offered >= needed,
                detail=f"guarantees {to_major(offered, scale)} {cur}; the product needs "
                f"{plain(p.guarantee.min_guaranteed_by_others_pct)}% = "
                f"{to_major(needed, scale)} {cur}",
            )
        )
    if req.guarantor_cover:
        for g in req.guarantors:
            checks.append(await _cover_check(session, req.loan_id, g, p))
    return checks


async def _cover_check(
    session: AsyncSession, loan_id: int, g: Guarantor, p: ProductSnapshot
) -> EligibilityCheck:
    free = await free_savings(session, g.member_id, p.currency, loan_id)
    return EligibilityCheck(
        rule="guarantor_cover",
        passed=free >= g.amount_minor,
        detail=f"guarantor {g.member_number} has {to_major(free, p.scale)} {p.currency} free "
        f"for a guarantee of {to_major(g.amount_minor, p.scale)} {p.currency}",
    )


async def record_event(session: AsyncSession, rec: LoanEventRecord) -> None:
    """Append one trail step and move the loan row to it; a retry of the same step is a no-op."""
    inserted = await session.scalar(
        insert(LoanEvent)
        .values(
            event_id=f"{rec.workflow_id}:{rec.seq}",
            loan_id=rec.loan_id,
            seq=rec.seq,
            at=rec.at,
            event=rec.event,
            actor=rec.actor,
            actor_id=rec.actor_id,
            from_state=rec.from_state,
            to_state=rec.to_state,
            reason=rec.reason,
            data=rec.data,
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(LoanEvent.id)
    )
    if inserted is None:
        return
    values: dict[str, object] = {
        "stage": rec.stage.value,
        "assigned_role": rec.assigned_role,
        "current_details": rec.current_details,
        "principal_minor": rec.principal_minor,
        "repayments": rec.repayments,
        "purpose": rec.purpose,
        "last_event_seq": rec.seq,
        "updated_at": rec.at,
    }
    if rec.to_state is not None:
        values["state"] = rec.to_state.value
    if rec.eligibility is not None:
        values["eligibility"] = [c.model_dump() for c in rec.eligibility]
    await session.execute(
        update(Loan).where(Loan.id == rec.loan_id, Loan.last_event_seq < rec.seq).values(values)
    )
    if rec.guarantor_member_id is not None and rec.guarantor_status is not None:
        await session.execute(
            update(LoanGuarantor)
            .where(
                LoanGuarantor.loan_id == rec.loan_id,
                LoanGuarantor.member_id == rec.guarantor_member_id,
            )
            .values(
                status=rec.guarantor_status,
                responded_at=rec.at,
                recorded_by=rec.actor,
                note=rec.reason,
            )
        )


class LoanActivities:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.limits = settings.kyc_basic_tier_limits
        self.sessions = sessions

    @activity.defn(name="check_loan_terms")
    async def check_loan_terms(self, req: TermsCheckRequest) -> TermsCheckResult:
        return await transaction(self.sessions, lambda s: check_terms(s, req, self.limits))

    @activity.defn(name="check_guarantor_cover")
    async def check_guarantor_cover(self, req: CoverRequest) -> CoverResult:
        async def work(session: AsyncSession) -> CoverResult:
            free = await free_savings(session, req.member_id, req.currency, req.loan_id)
            return CoverResult(free_minor=free, covered=free >= req.amount_minor)

        return await transaction(self.sessions, work)

    @activity.defn(name="record_loan_event")
    async def record_loan_event(self, rec: LoanEventRecord) -> None:
        await transaction(self.sessions, lambda s: record_event(s, rec))

    @activity.defn(name="loan_member_recipient")
    async def loan_member_recipient(self, member_id: int) -> Recipient:
        """Only for runs from before recipient ids (workflows/recipients.py), whose history has
        this lookup; new runs name the member by id and never see the address."""

        async def work(session: AsyncSession) -> Recipient:
            member = await session.get(Member, member_id)
            assert member is not None
            return Recipient(email=member.email, name=f"{member.first_name} {member.last_name}")

        return await transaction(self.sessions, work)

    @activity.defn(name="loan_staff_recipients")
    async def loan_staff_recipients(self, req: StaffRecipientsRequest) -> list[Recipient]:
        """Active staff holding any of the roles, with an e-mail address (SLA reminders). Only for
        runs from before recipient ids; new runs use notification_staff_recipients."""

        async def work(session: AsyncSession) -> list[Recipient]:
            rows = await session.execute(
                select(StaffUser.email, StaffUser.full_name)
                .join(StaffRole, StaffRole.user_id == StaffUser.id)
                .where(
                    StaffRole.role.in_(req.roles),
                    StaffUser.is_active.is_(True),
                    StaffUser.email.is_not(None),
                )
                .distinct()
                .order_by(StaffUser.email)
            )
            return [Recipient(email=email, name=name) for email, name in rows]

        return await transaction(self.sessions, work)

    def all(self) -> list[Callable[..., Awaitable[object]]]:
        return [
            self.check_loan_terms,
            self.check_guarantor_cover,
            self.record_loan_event,
            self.loan_member_recipient,
            self.loan_staff_recipients,
        ]
