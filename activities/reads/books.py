"""Read models for the API: member search, account views, statements, trial balance, journals.

Read-only queries; amounts leave here as major-unit strings at the currency's scale, so nothing
above this layer does money arithmetic.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field
from sqlalchemy import Select, and_, bindparam, case, func, literal, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from activities.ledger import engine as ledger_engine
from activities.tables import (
    Branch,
    Currency,
    InterestPosting,
    Journal,
    LedgerAccount,
    Member,
    Posting,
)
from domain.money import to_major
from schemas.errors import BankflowError, ErrorCode
from schemas.members import AccountView, InterestDetail, MemberView, Statement, StatementLine

A = LedgerAccount


class MemberPage(BaseModel):
    items: list[MemberView]
    next_cursor: int | None = Field(description="pass as `cursor` for the next page")


class TrialBalanceLine(BaseModel):
    number: str = Field(description="GL account code; member accounts are rolled into it")
    name: str
    gl_type: str
    debit: str
    credit: str


class TrialBalance(BaseModel):
    currency: str
    lines: list[TrialBalanceLine]
    total_debit: str
    total_credit: str
    balanced: bool


class JournalPostingView(BaseModel):
    line: int
    debit_account: str
    credit_account: str
    amount: str
    currency: str


class JournalView(BaseModel):
    journal_id: str
    kind: str
    value_date: date
    description: str
    reverses_journal_id: str | None
    reversed_by_journal_id: str | None
    created_at: datetime = Field(description="when it was posted")
    postings: list[JournalPostingView]


# ---- members ----------------------------------------------------------------------------------


def _member_view(member: Member, branch_code: str) -> MemberView:
    return MemberView(
        id=member.id,
        member_number=member.member_number,
        first_name=member.first_name,
        last_name=member.last_name,
        email=member.email,
        phone=member.phone,
        date_of_birth=member.date_of_birth,
        branch_code=branch_code,
        status=member.status,
        kyc_status=member.kyc_status,
        kyc_tier=member.kyc_tier,
        created_at=member.created_at,
    )


def _members() -> Select[Member, str]:
    return select(Member, Branch.code).join(Branch, Branch.id == Member.branch_id)


async def member_view(session: AsyncSession, member_number: str) -> MemberView:
    row = (await session.execute(_members().where(Member.member_number == member_number))).first()
    if row is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no member {member_number!r}")
    return _member_view(row[0], row[1])


def _like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.lower() + "%"


async def search_members(
    session: AsyncSession,
    *,
    q: str | None = None,
    branch: str | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: int | None = None,
) -> MemberPage:
    """Members whose number, first name, last name or full name starts with `q`, by id.

    Keyset paging on the member id: a page never skips or repeats a member while others are
    being added, and page N costs as much as page 1.
    """
    query = _members()
    if q:
        prefix = _like_prefix(q)
        full_name = func.lower(Member.first_name + literal(" ") + Member.last_name)
        query = query.where(
            or_(
                func.lower(Member.member_number).like(prefix, escape="\\"),
                func.lower(Member.last_name).like(prefix, escape="\\"),
                func.lower(Member.first_name).like(prefix, escape="\\"),
                full_name.like(prefix, escape="\\"),
            )
        )
    if branch:
        query = query.where(Branch.code == branch)
    if status:
        query = query.where(Member.status == status)
    if cursor is not None:
        query = query.where(Member.id > cursor)
    rows = (await session.execute(query.order_by(Member.id).limit(limit + 1))).all()
    items = [_member_view(m, code) for m, code in rows[:limit]]
    return MemberPage(items=items, next_cursor=items[-1].id if len(rows) > limit else None)


# ---- accounts and statements ------------------------------------------------------------------


async def _scale(session: AsyncSession, currency: str) -> int:
    scale = await session.scalar(select(Currency.scale).where(Currency.code == currency))
    if scale is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no currency {currency!r}")
    return int(scale)


def _view(account: LedgerAccount, scale: int, member_number: str | None) -> AccountView:
    """Balances as the member sees them: credits minus debits (a loan shows negative)."""
    balance = account.credits_posted_minor - account.debits_posted_minor
    return AccountView(
        id=account.id,
        number=account.code,
        name=account.name,
        kind=account.kind,
        currency=account.currency,
        member_number=member_number,
        status=account.status,
        balance=to_major(balance, scale),
        # Pending debits reserve money; pending credits are not spendable until posted.
        available=to_major(balance - account.debits_pending_minor, scale),
        pending_debits=to_major(account.debits_pending_minor, scale),
        pending_credits=to_major(account.credits_pending_minor, scale),
        opened_at=account.opened_at,
        closed_at=account.closed_at,
    )


async def account_view(session: AsyncSession, account: LedgerAccount) -> AccountView:
    """The view of an account already loaded (after opening or closing it)."""
    scale = await _scale(session, account.currency)
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


_ACCOUNT_VIEW = (
    select(A, Currency.scale, Member.member_number)
    .join(Currency, Currency.code == A.currency)
    .outerjoin(Member, Member.id == A.member_id)
    .where(A.code == bindparam("number"))
)


async def get_account_view(session: AsyncSession, number: str) -> AccountView:
    """The account by number with its currency's scale and its member, in one round trip (the
    hottest read of the API: a teller's balance enquiry)."""
    row = (await session.execute(_ACCOUNT_VIEW, {"number": number})).one_or_none()
    if row is None:
        raise BankflowError(ErrorCode.ACCOUNT_NOT_FOUND, f"no account {number!r}")
    account, scale, member_number = row
    return _view(account, int(scale), member_number)


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
    scale = await _scale(session, account.currency)
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


# ---- ledger -----------------------------------------------------------------------------------


async def trial_balance(session: AsyncSession, currency: str) -> TrialBalance:
    """Every GL account of a currency with its posted net balance on its normal side.

    Member accounts are rolled into their control account (savings into member savings, ...).
    Built from the cached balances, which `ledger verify` proves equal to the postings; since
    every posting debits one account and credits another by the same amount, the debit and
    credit columns are equal or the ledger is broken.
    """
    scale = await _scale(session, currency)
    group = func.coalesce(A.control_account_id, A.id)
    nets = (
        select(
            group.label("gl_id"),
            func.sum(A.debits_posted_minor - A.credits_posted_minor).label("net"),
        )
        .where(A.currency == currency)
        .group_by(group)
        .subquery()
    )
    rows = (
        await session.execute(
            select(A.code, A.name, A.gl_type, func.coalesce(nets.c.net, 0))
            .outerjoin(nets, nets.c.gl_id == A.id)
            .where(A.currency == currency, A.kind == "gl")
            .order_by(A.code)
        )
    ).all()
    lines = []
    total_debit = total_credit = 0
    for code, name, gl_type, net in rows:
        net = int(net)
        debit, credit = (net, 0) if net > 0 else (0, -net)
        total_debit += debit
        total_credit += credit
        lines.append(
            TrialBalanceLine(
                number=code,
                name=name,
                gl_type=gl_type,
                debit=to_major(debit, scale),
                credit=to_major(credit, scale),
            )
        )
    return TrialBalance(
        currency=currency,
        lines=lines,
        total_debit=to_major(total_debit, scale),
        total_credit=to_major(total_credit, scale),
        balanced=total_debit == total_credit,
    )


async def reversed_by(session: AsyncSession, journal_id: str) -> str | None:
    """The journal that reversed `journal_id`, if one did (an original is reversed once)."""
    found: str | None = await session.scalar(
        select(Journal.id).where(Journal.reverses_journal_id == journal_id)
    )
    return found


async def journal_view(session: AsyncSession, journal_id: str) -> JournalView:
    """A journal with account numbers and major-unit amounts, and its reversal links."""
    journal = await ledger_engine.load_journal(session, journal_id)
    ids = {p.debit_account_id for p in journal.postings} | {
        p.credit_account_id for p in journal.postings
    }
    codes = {
        i: code for i, code in await session.execute(select(A.id, A.code).where(A.id.in_(ids)))
    }
    scales = {c: scale for c, scale in await session.execute(select(Currency.code, Currency.scale))}
    return JournalView(
        journal_id=journal.journal_id,
        kind=journal.kind,
        value_date=journal.value_date,
        description=journal.description,
        reverses_journal_id=journal.reverses_journal_id,
        reversed_by_journal_id=journal.reversed_by_journal_id,
        created_at=journal.created_at,
        postings=[
            JournalPostingView(
                line=p.line,
                debit_account=codes[p.debit_account_id],
                credit_account=codes[p.credit_account_id],
                amount=to_major(p.amount_minor, scales[p.currency]),
                currency=p.currency,
            )
            for p in journal.postings
        ],
    )
