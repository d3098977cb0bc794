"""Read models for the API: member search, trial balance, journals (accounts and statements are
in `activities.reads.accounts`).

Read-only queries; amounts leave here as major-unit strings at the currency's scale, so nothing
above this layer does money arithmetic.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field
from sqlalchemy import Select, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.ledger import engine as ledger_engine
from activities.reads.accounts import currency_scale
from activities.tables import (
    Branch,
    Currency,
    Journal,
    LedgerAccount,
    Member,
)
from domain.money import to_major
from schemas.errors import BankflowError, ErrorCode
from schemas.members import MemberView

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


# ---- ledger -----------------------------------------------------------------------------------


async def trial_balance(session: AsyncSession, currency: str) -> TrialBalance:
    """Every GL account of a currency with its posted net balance on its normal side.

    Member accounts are rolled into their control account (savings into member savings, ...).
    Built from the cached balances, which `ledger verify` proves equal to the postings; since
    every posting debits one account and credits another by the same amount, the debit and
    credit columns are equal or the ledger is broken.
    """
    scale = await currency_scale(session, currency)
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
