"""The loan book's shared steps: the loan account and schedule of a disbursed loan, its
installments as `domain.allocation.Due` values, the loan's trail, and the GL accounts servicing
posts to.

Every function runs inside the caller's transaction (disbursement, repayment, reversal and the
daily job each own theirs) and takes the loan row lock first, so two of them never interleave on
one loan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from activities.accounts import open_member_account
from activities.ledger.chart import GlAccount, gl_code
from activities.tables import LedgerAccount, Loan, LoanEvent, LoanInstallment, Member
from domain.allocation import Due
from domain.money import to_major
from domain.schedule import Schedule, generate_schedule
from schemas.errors import BankflowError, ErrorCode
from schemas.loan_products import ProductSnapshot, schedule_terms
from schemas.loans import SYSTEM


async def lock_loan(session: AsyncSession, loan_number: str) -> Loan:
    """The loan row, locked for this transaction (NotFound if there is none)."""
    loan = await session.scalar(
        select(Loan).where(Loan.loan_number == loan_number).with_for_update()
    )
    if loan is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no loan {loan_number!r}")
    return loan


def product_of(loan: Loan) -> ProductSnapshot:
    """The product rules the loan was approved under (its snapshot, never today's product)."""
    return ProductSnapshot.model_validate(loan.product_snapshot)


def loan_schedule(loan: Loan, disbursed_on: date) -> Schedule:
    """The repayment schedule of the loan's current terms, disbursed on `disbursed_on`."""
    product = product_of(loan)
    return generate_schedule(
        schedule_terms(
            product,
            principal_minor=loan.principal_minor,
            repayments=loan.repayments,
            scale=product.scale,
            disbursed_on=disbursed_on,
        )
    )


async def open_loan_book(session: AsyncSession, loan: Loan, disbursed_on: date) -> int:
    """The loan's ledger account (opened once, kept across disbursement attempts) and its
    installments for `disbursed_on` (written fresh: a compensated attempt removed its own).
    Idempotent: a retry finds the account and the same installments. Returns the account id."""
    if loan.ledger_account_id is None:
        member = await session.get(Member, loan.member_id)
        assert member is not None
        account = await open_member_account(session, member, "loan", loan.currency)
        account.name = f"Loan {loan.loan_number}"
        loan.ledger_account_id = account.id
    existing = await session.scalar(
        select(LoanInstallment.id).where(LoanInstallment.loan_id == loan.id).limit(1)
    )
    if existing is None:
        schedule = loan_schedule(loan, disbursed_on)
        session.add_all(
            LoanInstallment(
                loan_id=loan.id,
                number=i.number,
                from_on=i.from_date,
                due_on=i.due_date,
                principal_minor=i.principal_minor,
                interest_minor=i.interest_minor,
            )
            for i in schedule.installments
        )
    await session.flush()
    return loan.ledger_account_id


def mark_active(loan: Loan, since: date) -> None:
    """Disbursed and owing (on activation, and when a reversal reopens a closed loan)."""
    loan.state, loan.stage, loan.disbursed_on = "active", "disbursed", since
    loan.closed_on, loan.overpaid_minor = None, 0
    loan.current_details = f"{loan.loan_number}: active since {since}"


def mark_closed(loan: Loan, state: str, on: date, overpaid_minor: int) -> None:
    """Paid off on `on`: nothing is overdue any more; `overpaid_minor` is cash received beyond
    the payoff (credited to the member's savings)."""
    loan.state, loan.stage = state, "closed"
    loan.closed_on, loan.overpaid_minor = on, overpaid_minor
    loan.days_past_due, loan.arrears_bucket, loan.overdue_since = 0, "current", None
    loan.overdue_minor = 0
    product = product_of(loan)
    how = (
        f"overpaid by {to_major(overpaid_minor, product.scale)} {loan.currency}, "
        "credited to savings"
        if overpaid_minor
        else "obligations met"
    )
    loan.current_details = f"{loan.loan_number}: closed on {on}: {how}"


def mark_undisbursed(loan: Loan, why: str) -> None:
    """Approved again, waiting for a disbursement (a compensated attempt or an undone one)."""
    loan.state, loan.stage = "approved", "approved"
    loan.disbursed_on = loan.serviced_through = loan.closed_on = None
    loan.days_past_due, loan.arrears_bucket, loan.overdue_since = 0, "current", None
    loan.overdue_minor = 0
    loan.current_details = f"{loan.loan_number}: approved: {why}: waiting for disbursement"[:1000]


async def drop_schedule(session: AsyncSession, loan: Loan) -> None:
    """Remove the installments of an undone disbursement (derived rows; the journals stay)."""
    await session.execute(delete(LoanInstallment).where(LoanInstallment.loan_id == loan.id))


def due_of(row: LoanInstallment) -> Due:
    return Due(
        number=row.number,
        from_on=row.from_on,
        due_on=row.due_on,
        principal=row.principal_minor,
        interest=row.interest_minor,
        fee=row.fee_minor,
        penalty=row.penalty_minor,
        principal_paid=row.principal_paid_minor,
        interest_paid=row.interest_paid_minor,
        fee_paid=row.fee_paid_minor,
        penalty_paid=row.penalty_paid_minor,
        interest_waived=row.interest_waived_minor,
    )


async def load_dues(session: AsyncSession, loan_id: int) -> list[Due]:
    """The loan's installments in order (the caller holds the loan lock)."""
    rows = await session.scalars(
        select(LoanInstallment)
        .where(LoanInstallment.loan_id == loan_id)
        .order_by(LoanInstallment.number)
    )
    return [due_of(r) for r in rows]


async def save_dues(
    session: AsyncSession, loan_id: int, before: Sequence[Due], after: Sequence[Due], on: date
) -> None:
    """Write the installments that changed; one paid in full gets `completed_on` = `on`, one
    that owes again (a reversal) loses it."""
    old = {d.number: d for d in before}
    for due in after:
        if old.get(due.number) == due:
            continue
        was_complete = old[due.number].complete if due.number in old else False
        values: dict[str, object] = {
            "penalty_minor": due.penalty,
            "fee_minor": due.fee,
            "principal_paid_minor": due.principal_paid,
            "interest_paid_minor": due.interest_paid,
            "fee_paid_minor": due.fee_paid,
            "penalty_paid_minor": due.penalty_paid,
            "interest_waived_minor": due.interest_waived,
        }
        if due.complete and not was_complete:
            values["completed_on"] = on
        elif not due.complete:
            values["completed_on"] = None
        await session.execute(
            update(LoanInstallment)
            .where(LoanInstallment.loan_id == loan_id, LoanInstallment.number == due.number)
            .values(values)
        )


async def trail(
    session: AsyncSession,
    loan: Loan,
    process_id: str,
    step: str,
    event: str,
    *,
    actor: str = SYSTEM,
    actor_id: int | None = None,
    at: datetime | None = None,
    reason: str = "",
    from_state: str | None = None,
    to_state: str | None = None,
    data: Mapping[str, object] | None = None,
) -> None:
    """One row of the loan's trail, `event_id` = `<process id>:<step>` (a retry writes nothing),
    `seq` after the loan's last (the caller holds the loan lock, so no other step numbers
    concurrently). `at` defaults to the transaction's time; `from_state` to the loan's state when
    the event changes it."""
    seq = await session.scalar(
        select(func.coalesce(func.max(LoanEvent.seq), 0)).where(LoanEvent.loan_id == loan.id)
    )
    inserted = await session.scalar(
        insert(LoanEvent)
        .values(
            event_id=f"{process_id}:{step}",
            loan_id=loan.id,
            seq=int(seq or 0) + 1,
            at=at if at is not None else func.now(),
            event=event,
            actor=actor,
            actor_id=actor_id,
            from_state=from_state or (loan.state if to_state else None),
            to_state=to_state,
            reason=reason,
            data=dict(data or {}),
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(LoanEvent.id)
    )
    if inserted is not None:
        loan.last_event_seq = max(loan.last_event_seq, int(seq or 0) + 1)
        loan.updated_at = func.now()


async def gl_ids(
    session: AsyncSession, currency: str, accounts: Iterable[GlAccount]
) -> dict[str, int]:
    """GL number -> ledger account id in `currency` (the chart must have them)."""
    wanted = {gl_code(gl, currency): gl.number for gl in accounts}
    rows = await session.execute(
        select(LedgerAccount.code, LedgerAccount.id).where(LedgerAccount.code.in_(wanted))
    )
    found = {wanted[code]: account_id for code, account_id in rows}
    missing = set(wanted.values()) - set(found)
    if missing:
        raise BankflowError(
            ErrorCode.CURRENCY_MISMATCH,
            f"the {currency} chart of accounts lacks GL {', '.join(sorted(missing))}; "
            f"run `bankflow chart init --currency {currency}`",
        )
    return found


async def member_savings_account(session: AsyncSession, member_id: int, currency: str) -> int:
    """The member's oldest open savings account in `currency` (where a loan pays out and from
    which fees and repayments are taken by default)."""
    account_id = await session.scalar(
        select(LedgerAccount.id)
        .where(
            LedgerAccount.member_id == member_id,
            LedgerAccount.kind == "savings",
            LedgerAccount.currency == currency,
            LedgerAccount.status == "open",
        )
        .order_by(LedgerAccount.id)
        .limit(1)
    )
    if account_id is None:
        raise BankflowError(
            ErrorCode.ACCOUNT_NOT_FOUND, f"the member has no open {currency} savings account"
        )
    return account_id
