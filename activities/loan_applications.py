"""What the API does in Postgres around a LoanApproval: register the application before the
workflow starts (so bad input writes nothing and a retry finds the same loan), and read a loan.

The application row is keyed on (entered_by, Idempotency-Key): a retry after a lost answer or a
Temporal outage meets the same loan number, and so the same workflow id, never a second loan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from activities.loan_products import (
    build_schedule,
    check_terms,
    currency_scale,
    get_product,
    minor,
    snapshot,
)
from activities.reads.loan_statement import loan_schedule
from activities.staff import Principal
from activities.tables import (
    Branch,
    Loan,
    LoanEvent,
    LoanGuarantor,
    LoanTerms,
    Member,
    StaffUser,
)
from domain.money import to_major
from schemas.errors import BankflowError, ErrorCode
from schemas.loan_products import ProductSnapshot, plain, schedule_terms
from schemas.loans import (
    EligibilityCheck,
    Guarantor,
    GuarantorView,
    LoanCreate,
    LoanState,
    LoanView,
    Stage,
    TrailEntry,
)

WORKFLOW_PREFIX = "loan-"


def workflow_id(loan_number: str) -> str:
    return WORKFLOW_PREFIX + loan_number


@dataclass(frozen=True)
class Application:
    loan: Loan
    product: ProductSnapshot
    member_number: str
    branch: str
    guarantors: list[Guarantor]


async def _member(session: AsyncSession, number: str, role: str) -> Member:
    member = await session.scalar(select(Member).where(Member.member_number == number))
    if member is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no member {number!r} ({role})")
    if member.status != "active":
        raise BankflowError(ErrorCode.VALIDATION, f"{role} {number} is {member.status}")
    return member


async def register_application(
    session: AsyncSession, body: LoanCreate, principal: Principal, key: str
) -> Application:
    """Validate an application and insert it (state submitted_and_pending_approval), or find the
    one this user already registered under this key."""
    existing = await session.scalar(
        select(Loan).where(Loan.entered_by_id == principal.id, Loan.idempotency_key == key)
    )
    if existing is not None:
        return await application(session, existing)
    member = await _member(session, body.member_number, "applicant")
    product = await get_product(session, body.product)
    if product.status != "active":
        raise BankflowError(ErrorCode.VALIDATION, f"loan product {product.code} is retired")
    scale = await currency_scale(session, product.currency)
    snap = snapshot(product, scale)
    principal_minor = minor(body.principal, scale, "principal")
    check_terms(snap, principal_minor, body.repayments)
    guarantors: list[Guarantor] = []
    for g in body.guarantors:
        m = await _member(session, g.member_number, "guarantor")
        guarantors.append(
            Guarantor(
                member_id=m.id,
                member_number=m.member_number,
                amount_minor=minor(g.amount, scale, f"guarantor {g.member_number} amount"),
            )
        )
    expected = body.expected_disbursement_on or datetime.now(UTC).date()
    build_schedule(
        schedule_terms(
            snap,
            principal_minor=principal_minor,
            repayments=body.repayments,
            scale=scale,
            disbursed_on=expected,
        )
    )
    loan_id = await session.scalar(text("SELECT nextval(pg_get_serial_sequence('loans', 'id'))"))
    assert loan_id is not None
    number = f"LN{loan_id:06d}"
    inserted = await session.scalar(
        insert(Loan)
        .values(
            id=loan_id,
            loan_number=number,
            member_id=member.id,
            product_id=product.id,
            currency=product.currency,
            requested_principal_minor=principal_minor,
            requested_repayments=body.repayments,
            principal_minor=principal_minor,
            repayments=body.repayments,
            purpose=body.purpose,
            expected_disbursement_on=expected,
            state=LoanState.SUBMITTED.value,
            stage=Stage.CHECKING_ELIGIBILITY.value,
            current_details="checking eligibility",
            eligibility=[],
            entered_by_id=principal.id,
            idempotency_key=key,
            workflow_id=workflow_id(number),
            last_event_seq=0,
        )
        .on_conflict_do_nothing(constraint="uq_loans_entered_by_key")
        .returning(Loan.id)
    )
    if inserted is None:  # a concurrent retry with the same key won the race
        existing = await session.scalar(
            select(Loan).where(Loan.entered_by_id == principal.id, Loan.idempotency_key == key)
        )
        assert existing is not None
        return await application(session, existing)
    session.add(LoanTerms(loan_id=loan_id, product_snapshot=snap.model_dump(mode="json")))
    for pledge in guarantors:
        session.add(
            LoanGuarantor(
                loan_id=loan_id, member_id=pledge.member_id, amount_minor=pledge.amount_minor
            )
        )
    session.add(
        LoanEvent(
            event_id=f"{workflow_id(number)}:0",
            loan_id=loan_id,
            seq=0,
            at=datetime.now(UTC),
            event="submitted",
            actor=principal.username,
            actor_id=principal.id,
            to_state=LoanState.SUBMITTED.value,
            reason=body.purpose,
            data={"principal": body.principal, "repayments": body.repayments},
        )
    )
    await session.flush()
    loan = await session.get(Loan, loan_id)
    assert loan is not None
    return await application(session, loan)


async def application(session: AsyncSession, loan: Loan) -> Application:
    member = await session.get(Member, loan.member_id)
    assert member is not None
    branch = await session.scalar(select(Branch.code).where(Branch.id == member.branch_id))
    rows = await session.execute(
        select(LoanGuarantor, Member.member_number)
        .join(Member, Member.id == LoanGuarantor.member_id)
        .where(LoanGuarantor.loan_id == loan.id)
        .order_by(LoanGuarantor.id)
    )
    return Application(
        loan=loan,
        product=ProductSnapshot.model_validate(loan.product_snapshot),
        member_number=member.member_number,
        branch=branch or "",
        guarantors=[
            Guarantor(member_id=g.member_id, member_number=number, amount_minor=g.amount_minor)
            for g, number in rows
        ],
    )


async def get_loan(session: AsyncSession, loan_number: str) -> Loan:
    loan = await session.scalar(select(Loan).where(Loan.loan_number == loan_number))
    if loan is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no loan {loan_number!r}")
    return loan


async def member_ids_of(session: AsyncSession, user_id: int) -> list[int]:
    """Members who are this staff user: the same e-mail address (case-insensitive)."""
    email = await session.scalar(select(StaffUser.email).where(StaffUser.id == user_id))
    if not email:
        return []
    rows = await session.scalars(
        select(Member.id).where(func.lower(Member.email) == email.lower()).order_by(Member.id)
    )
    return list(rows)


async def loan_view(session: AsyncSession, loan_number: str) -> LoanView:
    """Terms, the current schedule (proposed, or the loan book's once disbursed), state and the
    whole trail."""
    loan = await get_loan(session, loan_number)
    app = await application(session, loan)
    snap, scale = app.product, app.product.scale
    statuses = await session.execute(
        select(LoanGuarantor, Member.member_number)
        .join(Member, Member.id == LoanGuarantor.member_id)
        .where(LoanGuarantor.loan_id == loan.id)
        .order_by(LoanGuarantor.id)
    )
    events = await session.scalars(
        select(LoanEvent).where(LoanEvent.loan_id == loan.id).order_by(LoanEvent.seq)
    )
    entered_by = await session.scalar(
        select(StaffUser.username).where(StaffUser.id == loan.entered_by_id)
    )
    return LoanView(
        loan_number=loan.loan_number,
        workflow_id=loan.workflow_id,
        member_number=app.member_number,
        product=snap.code,
        currency=snap.currency,
        state=loan.state,
        stage=loan.stage,
        assigned_role=loan.assigned_role,
        waiting_for=loan.current_details,
        requested_principal=to_major(loan.requested_principal_minor, scale),
        requested_repayments=loan.requested_repayments,
        principal=to_major(loan.principal_minor, scale),
        repayments=loan.repayments,
        purpose=loan.purpose,
        expected_disbursement_on=loan.expected_disbursement_on,
        disbursed_on=loan.disbursed_on,
        closed_on=loan.closed_on,
        overpaid=to_major(loan.overpaid_minor, scale),
        annual_interest_rate=str(plain(snap.annual_interest_rate)),
        entered_by=entered_by or "",
        guarantors=[
            GuarantorView(
                member_number=number,
                amount=to_major(g.amount_minor, scale),
                status=g.status,
                responded_at=g.responded_at,
                recorded_by=g.recorded_by,
            )
            for g, number in statuses
        ],
        eligibility=[EligibilityCheck.model_validate(c) for c in loan.eligibility],
        schedule=await loan_schedule(session, loan),
        trail=[
            TrailEntry(
                at=e.at,
                event=e.event,
                actor=e.actor,
                from_state=e.from_state,
                to_state=e.to_state,
                reason=e.reason,
                data=e.data,
            )
            for e in events
        ],
        created_at=loan.created_at,
    )


def product_of(loan: Loan) -> ProductSnapshot:
    return ProductSnapshot.model_validate(loan.product_snapshot)
