"""Reversing a loan's journals: what a repayment or a disbursement reversal must also do to the
loan book, in the same transaction as the mirror journal.

- A repayment (Fineract's "adjust"): the loan is put back to where it was before that repayment by
  taking off its portions and the portions of every later repayment; then the later ones are
  applied again, in order, as if the reversed one had never happened. A later repayment whose
  split changes has its journal reversed and a new one posted (`<reversal>:replay-<txn>`); its
  loan transaction then points at the new journal. A loan the reversed repayment had closed opens
  again and its guarantors' liens are placed again.
- A disbursement ("undo disbursal"): only while the loan has no repayment standing. The loan goes
  back to approved: liens voided, schedule removed, accrued interest and penalties taken back.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities import loan_book
from activities import repayments as rp
from activities.ledger import engine as ledger_engine
from activities.ledger import holds as ledger_holds
from activities.ledger.periods import is_closed
from activities.loan_disbursal_undo import undo_disbursement
from activities.tables import Disbursement, Hold, Loan, LoanTransaction
from domain.allocation import Allocation, Due, Portion, allocate, settle
from schemas.errors import BankflowError, ErrorCode
from schemas.ledger import (
    HoldRequest,
    JournalResult,
    ReversalRequest,
)

REPAYMENT = "loan_repayment"
DISBURSEMENT = "loan_disbursement"
STANDING = LoanTransaction.reversed_by_journal_id.is_(None)


async def _txn(session: AsyncSession, journal_id: str, kind: str) -> LoanTransaction:
    row = await session.scalar(
        select(LoanTransaction).where(
            LoanTransaction.journal_id == journal_id,
            LoanTransaction.kind == kind.removeprefix("loan_"),
        )
    )
    if row is None:
        raise BankflowError(
            ErrorCode.NOT_REVERSIBLE, f"journal {journal_id!r} belongs to no loan transaction"
        )
    return row


async def _later_repayments(session: AsyncSession, txn: LoanTransaction) -> list[LoanTransaction]:
    rows = await session.scalars(
        select(LoanTransaction)
        .where(
            LoanTransaction.loan_id == txn.loan_id,
            LoanTransaction.kind == "repayment",
            STANDING,
            LoanTransaction.id != txn.id,
        )
        .order_by(LoanTransaction.value_date, LoanTransaction.id)
    )
    return [r for r in rows if (r.value_date, r.id) > (txn.value_date, txn.id)]


async def check(session: AsyncSession, original: JournalResult) -> str:
    """Why this loan journal may be reversed (BankflowError when it may not)."""
    txn = await _txn(session, original.journal_id, original.kind)
    loan = await session.get(Loan, txn.loan_id)
    assert loan is not None
    if original.kind == DISBURSEMENT:
        if loan.state != "active":
            raise BankflowError(
                ErrorCode.LOAN_STATE, f"loan {loan.loan_number} is {loan.state}, not active"
            )
        repaid = await session.scalar(
            select(LoanTransaction.id).where(
                LoanTransaction.loan_id == loan.id, LoanTransaction.kind == "repayment", STANDING
            )
        )
        if repaid is not None:
            raise BankflowError(
                ErrorCode.LOAN_STATE,
                f"loan {loan.loan_number} has repayments: reverse them before the disbursement",
            )
        row = await session.scalar(
            select(Disbursement).where(Disbursement.journal_id == original.journal_id)
        )
        if row is not None and row.destination == "external":
            raise BankflowError(
                ErrorCode.NOT_REVERSIBLE,
                "the loan was paid out to another bank: recover the payout first",
            )
        return f"undo the disbursement of {loan.loan_number}: the loan returns to approved"
    if loan.state not in ("active", "closed_obligations_met", "overpaid"):
        raise BankflowError(ErrorCode.LOAN_STATE, f"loan {loan.loan_number} is {loan.state}")
    later = await _later_repayments(session, txn)
    for r in later:
        if await is_closed(session, r.value_date):
            raise BankflowError(
                ErrorCode.PERIOD_CLOSED,
                f"a later repayment of {loan.loan_number} ({r.journal_id}) is in a closed period",
            )
    return f"{loan.loan_number}: {len(later)} later repayment(s) re-applied"


async def lock(session: AsyncSession, original: JournalResult) -> None:
    """Lock the loan before the mirror touches any account: repayments and the daily job take the
    loan row first too, so the three queue on it instead of deadlocking on the accounts."""
    txn = await _txn(session, original.journal_id, original.kind)
    await session.get(Loan, txn.loan_id, with_for_update=True)


async def apply(
    session: AsyncSession, original: JournalResult, reversal_id: str, value_date: date
) -> None:
    """The loan side of a reversal whose mirror journal was just posted (same transaction)."""
    if original.kind == REPAYMENT:
        await _reverse_repayment(session, original, reversal_id, value_date)
    elif original.kind == DISBURSEMENT:
        txn = await _txn(session, original.journal_id, original.kind)
        await undo_disbursement(session, txn, original, reversal_id, value_date)


# --- repayments ------------------------------------------------------------------------------


def _portions(txn: LoanTransaction) -> list[Portion]:
    return [
        Portion(
            number=int(p["number"]),
            penalty=int(p.get("penalty_minor", 0)),
            fee=int(p.get("fee_minor", 0)),
            interest=int(p.get("interest_minor", 0)),
            principal=int(p.get("principal_minor", 0)),
        )
        for p in txn.allocation.get("portions", [])
    ]


def _take_off(dues: list[Due], txn: LoanTransaction) -> list[Due]:
    """The installments as they were before `txn`: its portions unpaid, its waiver undone and the
    interest it gave back paid again."""
    paid = {p.number: p for p in _portions(txn)}
    cut = {int(n): int(a) for n, a in txn.allocation.get("waived", [])}
    back = {int(n): int(a) for n, a in txn.allocation.get("refunded", [])}
    out = []
    for d in dues:
        p = paid.get(d.number, Portion(d.number))
        out.append(
            Due(
                number=d.number,
                from_on=d.from_on,
                due_on=d.due_on,
                principal=d.principal,
                interest=d.interest,
                fee=d.fee,
                penalty=d.penalty,
                principal_paid=d.principal_paid - p.principal,
                interest_paid=d.interest_paid - p.interest + back.get(d.number, 0),
                fee_paid=d.fee_paid - p.fee,
                penalty_paid=d.penalty_paid - p.penalty,
                interest_waived=d.interest_waived - cut.get(d.number, 0) - back.get(d.number, 0),
            )
        )
    return out


def _restore_accruals(loan: Loan, txn: LoanTransaction) -> None:
    """Accrual products: what the repayment settled from receivables is receivable again and
    what it recognised directly as income is no longer recognised."""
    receivable = txn.allocation.get("receivable") or {}
    if not receivable:  # a cash-accounting product keeps no receivables
        return
    interest_from = int(receivable.get("interest", 0))
    refund = sum(int(a) for _, a in txn.allocation.get("refunded", []))
    written_back = int(txn.allocation.get("written_back", 0))
    loan.interest_receivable_minor += interest_from + written_back
    loan.interest_recognized_minor -= txn.interest_minor - interest_from - refund - written_back
    loan.penalty_receivable_minor += int(receivable.get("penalty", 0))


async def _reverse_repayment(
    session: AsyncSession, original: JournalResult, reversal_id: str, value_date: date
) -> None:
    txn = await _txn(session, original.journal_id, original.kind)
    loan = await session.get(Loan, txn.loan_id, with_for_update=True)
    assert loan is not None
    later = await _later_repayments(session, txn)
    before = await loan_book.load_dues(session, loan.id)
    dues = before
    for r in [*reversed(later), txn]:  # newest first: each one's portions come off its state
        dues = _take_off(dues, r)
        _restore_accruals(loan, r)
    txn.reversed_by_journal_id = f"{reversal_id}:reverse"
    state_before = loan.state
    if state_before != "active":
        await _reopen(session, loan, reversal_id, value_date)
    for r in later:
        await ledger_engine.reverse_journal(
            session,
            ReversalRequest(
                original_journal_id=r.journal_id,
                journal_id=f"{reversal_id}:undo-{r.id}",
                value_date=value_date,
                description=f"Re-allocation after reversing {original.journal_id}",
                process_id=reversal_id,
            ),
        )
        # Re-applied with the money it brought in, never with what was asked and not taken
        # from savings: a re-allocation takes no more from anyone than the repayment did.
        alloc = allocate(dues, r.amount_minor, r.value_date, rp.rounding_of(loan))
        dues = settle(dues, alloc)
        await _repost(session, loan, r, alloc, f"{reversal_id}:replay-{r.id}", value_date)
        if alloc.closes:
            got = rp.received(alloc, r.source or "savings")
            loan_book.mark_closed(loan, rp.closed_state(got), r.value_date, got.overpaid)
            await rp.void_liens(session, loan.loan_number)
    await loan_book.save_dues(session, loan.id, before, dues, value_date)
    await loan_book.trail(
        session,
        loan,
        reversal_id,
        "loan",
        "repayment_reversed",
        actor="reversal",
        from_state=state_before,
        to_state=loan.state if loan.state != state_before else None,
        reason=f"repayment {original.journal_id} reversed; {len(later)} later re-applied",
        data={"reversal_id": reversal_id, "reapplied": [r.id for r in later]},
    )


async def _repost(
    session: AsyncSession,
    loan: Loan,
    txn: LoanTransaction,
    alloc: Allocation,
    journal_id: str,
    value_date: date,
) -> None:
    """Post a later repayment again with its new split and point its loan transaction at it."""
    source = txn.source or "savings"
    got = rp.received(alloc, source)
    requested = int(txn.allocation.get("requested", txn.amount_minor))
    credits = await rp.book(
        session,
        loan,
        alloc,
        source,
        journal_id,
        value_date,
        description=f"Repayment of loan {loan.loan_number} re-applied ({txn.source})",
        process_id=journal_id.rsplit(":", 1)[0],
        metadata={"loan_number": loan.loan_number, "replaces": txn.journal_id},
    )
    txn.allocation = {
        **txn.allocation,
        **rp.allocation_record(alloc, credits, source),
        "requested": requested,
        "not_taken": requested - got.taken,
        "replaced": [*txn.allocation.get("replaced", []), txn.journal_id],
    }
    txn.journal_id = journal_id
    txn.amount_minor = got.taken
    txn.principal_minor, txn.interest_minor = alloc.total("principal"), alloc.total("interest")
    txn.fee_minor, txn.penalty_minor = alloc.total("fee"), alloc.total("penalty")
    txn.overpayment_minor = got.overpaid


async def _reopen(session: AsyncSession, loan: Loan, reversal_id: str, on: date) -> None:
    """A closed loan owes again: active, and its guarantors' liens placed again where the
    guarantor's savings still cover them (a shortfall is put on the trail for staff)."""
    assert loan.disbursed_on is not None
    loan_book.mark_active(loan, loan.disbursed_on)
    voided = await session.scalars(
        select(Hold).where(
            Hold.process_id.like(f"disbursement-{loan.loan_number}-%"),
            Hold.status == "voided",
            Hold.void_reason == "loan closed",
        )
    )
    for n, hold in enumerate(voided.all(), start=1):
        try:
            async with session.begin_nested():
                await ledger_holds.place_hold(
                    session,
                    HoldRequest(
                        hold_id=f"{reversal_id}:lien-{n}",
                        debit_account_id=hold.debit_account_id,
                        credit_account_id=hold.credit_account_id,
                        amount_minor=hold.amount_minor,
                        currency=hold.currency,
                        description=f"Guarantee lien on loan {loan.loan_number}, restored",
                        process_id=hold.process_id,
                    ),
                )
        except BankflowError as exc:
            await loan_book.trail(
                session,
                loan,
                reversal_id,
                f"lien-{n}",
                "lien_not_restored",
                actor="reversal",
                reason=exc.detail,
            )
