"""Read models of accounts: the account view a teller sees and the statement of its postings.

Read-only queries; amounts leave here as major-unit strings at the currency's scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import and_, bindparam, case, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from activities.direct import DirectPool
from activities.tables import Currency, InterestPosting, Journal, LedgerAccount, Member, Posting
from domain.money import to_major
from schemas.errors import BankflowError, ErrorCode
from schemas.members import AccountView, InterestDetail, Statement, StatementLine

A = LedgerAccount


async def currency_scale(session: AsyncSession, currency: str) -> int:
    scale = await session.scalar(select(Currency.scale).where(Currency.code == currency))
    if scale is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no currency {currency!r}")
    return int(scale)


def _view(account: LedgerAccount, scale: int, member_number: str | None) -> AccountView:
    return _view_of((*(getattr(account, c.key) for c in _VIEW_COLUMNS), scale, member_number))


def _view_of(row: Sequence[Any]) -> AccountView:
    """Balances as the member sees them: credits minus debits (a loan shows negative). `row`:
    the _VIEW_COLUMNS, the currency's scale and the member number."""
    (id_, code, name, kind, currency, status, debits_posted, credits_posted, debits_pending,
     credits_pending, opened_at, closed_at, scale, member_number) = row  # fmt: skip
    balance = credits_posted - debits_posted
    return AccountView(
        id=id_,
        number=code,
        name=name,
        kind=kind,
        currency=currency,
        member_number=member_number,
        status=status,
        balance=to_major(balance, scale),
        # Pending debits reserve money; pending credits are not spendable until posted.
        available=to_major(balance - debits_pending, scale),
        pending_debits=to_major(debits_pending, scale),
        pending_credits=to_major(credits_pending, scale),
        opened_at=opened_at,
        closed_at=closed_at,
    )


async def account_view(session: AsyncSession, account: LedgerAccount) -> AccountView:
    """The view of an account already loaded (after opening or closing it)."""
    scale = await currency_scale(session, account.currency)
    member_number = None
    if account.member_id is not None:
        member_number = await session.scalar(
            select(Member.member_number).where(Member.id == account.member_id)
        )
    return _view(account, scale, member_number)


async def account_kind(session: AsyncSession, number: str) -> str:
    """gl, savings, shares or loan (AccountNotFound if there is no such account)."""
    kind: str | None = await session.scalar(select(A.kind).where(A.code == number))
    if kind is None:
        raise BankflowError(ErrorCode.ACCOUNT_NOT_FOUND, f"no account {number!r}")
    return kind


# In the order _view_of reads them.
_VIEW_COLUMNS = (
    A.id,
    A.code,
    A.name,
    A.kind,
    A.currency,
    A.status,
    A.debits_posted_minor,
    A.credits_posted_minor,
    A.debits_pending_minor,
    A.credits_pending_minor,
    A.opened_at,
    A.closed_at,
)
_ACCOUNT_VIEW = (
    select(*_VIEW_COLUMNS, Currency.scale, Member.member_number)
    .join(Currency, Currency.code == A.currency)
    .outerjoin(Member, Member.id == A.member_id)
    .where(A.code == bindparam("number"))
)


async def get_account_view(db: DirectPool, number: str) -> AccountView:
    """The account by number with its currency's scale and its member, in one round trip (the
    hottest read of the API: a teller's balance enquiry)."""
    row = await db.one(_ACCOUNT_VIEW, {"number": number})
    if row is None:
        raise BankflowError(ErrorCode.ACCOUNT_NOT_FOUND, f"no account {number!r}")
    return _view_of(row)


async def statement(
    session: AsyncSession,
    number: str,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    after: int | None = None,
    limit: int = 100,
) -> Statement:
    """Postings of one account with value dates in [date_from, date_to], in posting order.

    Balances are credits minus debits. `opening_balance` is the balance before `date_from`,
    `closing_balance` after the last posting in the range; each line's `balance` runs from the
    opening balance, also on later pages (the postings before the cursor are summed in SQL).
    """
    account = await session.scalar(select(A).where(A.code == number))
    if account is None:
        raise BankflowError(ErrorCode.ACCOUNT_NOT_FOUND, f"no account {number!r}")
    scale = await currency_scale(session, account.currency)
    # Two index-friendly halves (debit side, credit side) instead of one OR over both columns.
    signed = union_all(
        select(Posting.id, (-Posting.amount_minor).label("signed")).where(
            Posting.debit_account_id == account.id
        ),
        select(Posting.id, Posting.amount_minor.label("signed")).where(
            Posting.credit_account_id == account.id
        ),
    ).subquery()
    in_range = and_(
        Journal.value_date >= date_from if date_from else literal(True),
        Journal.value_date <= date_to if date_to else literal(True),
    )
    before_range = Journal.value_date < date_from if date_from else literal(False)
    before_page = and_(in_range, signed.c.id <= after) if after is not None else literal(False)
    joined = signed.join(Posting, Posting.id == signed.c.id).join(
        Journal, Journal.id == Posting.journal_id
    )
    totals = (
        await session.execute(
            select(
                func.coalesce(func.sum(case((before_range, signed.c.signed), else_=0)), 0),
                func.coalesce(func.sum(case((before_page, signed.c.signed), else_=0)), 0),
                func.coalesce(func.sum(case((in_range, signed.c.signed), else_=0)), 0),
            ).select_from(joined)
        )
    ).one()
    opening, page_base, in_range_total = (int(v) for v in totals)
    page_query = (
        select(
            signed.c.id,
            signed.c.signed,
            Journal.id,
            Journal.kind,
            Journal.value_date,
            Journal.description,
            Posting.created_at,
        )
        .select_from(joined)
        .where(in_range)
        .order_by(signed.c.id)
        .limit(limit + 1)
    )
    if after is not None:
        page_query = page_query.where(signed.c.id > after)
    rows = (await session.execute(page_query)).all()
    running = opening + page_base
    interest = await _interest_details(
        session, account.id, scale, {r[2] for r in rows[:limit] if r[3] == "interest"}
    )
    lines = []
    for posting_id, amount, journal_id, kind, value_date, description, posted_at in rows[:limit]:
        running += amount
        lines.append(
            StatementLine(
                posting_id=posting_id,
                journal_id=journal_id,
                kind=kind,
                value_date=value_date,
                posted_at=posted_at,
                description=description,
                debit=to_major(-amount, scale) if amount < 0 else None,
                credit=to_major(amount, scale) if amount > 0 else None,
                balance=to_major(running, scale),
                interest=interest.get(journal_id),
            )
        )
    return Statement(
        account=await account_view(session, account),
        opening_balance=to_major(opening, scale),
        closing_balance=to_major(opening + in_range_total, scale),
        lines=lines,
        next_cursor=lines[-1].posting_id if len(rows) > limit else None,
    )


async def _interest_details(
    session: AsyncSession, account_id: int, scale: int, journal_ids: set[str]
) -> dict[str, InterestDetail]:
    """Gross, tax and net of the month-end interest journals on a statement page."""
    if not journal_ids:
        return {}
    rows = await session.execute(
        select(
            InterestPosting.journal_id,
            InterestPosting.period,
            InterestPosting.posted_minor,
            InterestPosting.tax_minor,
        ).where(
            InterestPosting.account_id == account_id,
            InterestPosting.journal_id.in_(sorted(journal_ids)),
        )
    )
    return {
        journal_id: InterestDetail(
            period=period,
            gross=to_major(gross, scale),
            tax=to_major(tax, scale),
            net=to_major(gross - tax, scale),
        )
        for journal_id, period, gross, tax in rows
        if journal_id is not None
    }
