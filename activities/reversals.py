"""Reversal activities: validate a journal for reversal and hold the funds it credited, post the
mirror journal when approved, release the holds otherwise, keep the case file, list the members
to notify. Each activity is one transaction; postings go through the ledger engine only.

Idempotency: hold ids carry the reversal id and the request id, the mirror journal id the
reversal id (one per original, which the unique `reverses_journal_id` guarantees anyway), and a
retried activity finds its own earlier writes instead of writing twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities import loan_reversal
from activities.db import in_transaction
from activities.errors import transaction
from activities.ledger import engine as ledger_engine
from activities.ledger import holds as ledger_holds
from activities.ledger.chart import MEMBER_OVERDRAFTS, gl_code
from activities.ledger.periods import is_closed
from activities.reversal_checks import check_reversible
from activities.tables import Branch, Currency, Hold, Journal, LedgerAccount, Member, ReversalEvent
from domain.money import to_major
from schemas.errors import BankflowError, ErrorCode
from schemas.ledger import (
    HoldRequest,
    JournalRequest,
    JournalResult,
    PostingLine,
    ReversalRequest,
    VoidHoldRequest,
)
from schemas.notifications import NotificationRequest
from schemas.reversals import (
    LOAN_KINDS,
    Check,
    EventRecord,
    ExecuteRequest,
    ExecuteResult,
    HeldLine,
    NoticeRequest,
    PrepareRequest,
    ReleaseRequest,
    ReversalPlan,
    Shortfall,
)

T = TypeVar("T")
A = LedgerAccount
# Where an approved overdraft lands: the member account stays at zero (the database forbids a
# negative no-overdraft account) and the institution records what the member owes.
# In the default chart since it exists; created here too for charts made before it did.
OVERDRAFT_RECEIVABLE = MEMBER_OVERDRAFTS
NOTICE_TEMPLATE = "reversal_completed"


def _mirror_net_debits(original: JournalResult) -> dict[int, int]:
    """What the mirror journal takes from each account: its credits in the original, less its
    debits there."""
    net: dict[int, int] = defaultdict(int)
    for p in original.postings:
        net[p.credit_account_id] += p.amount_minor
        net[p.debit_account_id] -= p.amount_minor
    return net


async def _lock_guarded(session: AsyncSession, original: JournalResult) -> dict[int, LedgerAccount]:
    """Lock (ascending id, as the engine does) the no-overdraft accounts the mirror debits."""
    ids = sorted({p.credit_account_id for p in original.postings})
    rows = await session.scalars(
        select(A)
        .where(A.id.in_(ids), A.debits_must_not_exceed_credits)
        .order_by(A.id)
        .with_for_update()
    )
    return {a.id: a for a in rows}


def _available(account: LedgerAccount) -> int:
    return account.credits_posted_minor - account.debits_posted_minor - account.debits_pending_minor


async def _place_holds(
    session: AsyncSession, req: PrepareRequest, original: JournalResult
) -> tuple[list[HeldLine], list[Shortfall]]:
    """Hold what each no-overdraft account the original credited still has of that credit.

    The amount is decided under the account lock. A retry finds the holds of its first attempt
    (their own funds now count as pending) and keeps their amounts instead of recomputing.
    """
    guarded = await _lock_guarded(session, original)
    prefix = f"{req.reversal_id}:{req.request_id}:hold:"
    earlier = {
        h.id: h.amount_minor
        for h in await session.scalars(select(Hold).where(Hold.id.startswith(prefix)))
    }
    available = {i: max(_available(a), 0) for i, a in guarded.items()}
    held: list[HeldLine] = []
    held_by_account: dict[int, int] = defaultdict(int)
    for p in original.postings:
        account = guarded.get(p.credit_account_id)
        if account is None:
            continue
        hold_id = f"{prefix}{p.line}"
        if earlier:
            amount = earlier.get(hold_id, 0)
        else:
            amount = min(p.amount_minor, available[account.id])
            available[account.id] -= amount
        if amount == 0:
            continue
        await ledger_holds.place_hold(
            session,
            HoldRequest(
                hold_id=hold_id,
                debit_account_id=p.credit_account_id,
                credit_account_id=p.debit_account_id,
                amount_minor=amount,
                currency=p.currency,
                description=f"Pending reversal of {original.journal_id}",
                process_id=req.reversal_id,
            ),
        )
        held.append(HeldLine(hold_id=hold_id, account=account.code, amount_minor=amount))
        held_by_account[account.id] += amount
    net = _mirror_net_debits(original)
    shortfalls = [
        Shortfall(account_id=i, account=a.code, amount_minor=net[i] - held_by_account[i])
        for i, a in guarded.items()
        if net[i] - held_by_account[i] > 0
    ]
    return held, shortfalls


async def prepare(session: AsyncSession, req: PrepareRequest) -> ReversalPlan:
    original, checks, refusal = await check_reversible(session, req.journal_id)
    if original is None:
        assert refusal is not None
        raise refusal  # nothing to show a case for: the API refuses this before starting
    currency = original.postings[0].currency
    scale = await session.scalar(select(Currency.scale).where(Currency.code == currency))
    ids = [p.credit_account_id for p in original.postings] + [
        p.debit_account_id for p in original.postings
    ]
    branch = await session.scalar(
        select(Branch.code)
        .join(A, A.branch_id == Branch.id)
        .where(A.id.in_(ids), A.member_id.is_not(None))
        .limit(1)
    )
    plan = ReversalPlan(
        journal_id=original.journal_id,
        kind=original.kind,
        value_date=original.value_date,
        currency=currency,
        scale=int(scale or 0),
        amount_minor=sum(p.amount_minor for p in original.postings if p.currency == currency),
        branch=branch or "",
        checks=checks,
    )
    if refusal is not None:
        plan.error, plan.error_detail = refusal.code.value, refusal.detail
        return plan
    plan.holds, plan.shortfalls = await _place_holds(session, req, original)
    plan.checks.append(
        Check(
            name="no overdraft",
            ok=not plan.shortfalls,
            detail="; ".join(
                f"{s.account} would be overdrawn by {to_major(s.amount_minor, plan.scale)}: "
                "needs an overdraft override"
                for s in plan.shortfalls
            ),
        )
    )
    return plan


async def _receivable(session: AsyncSession, currency: str) -> int:
    code = gl_code(OVERDRAFT_RECEIVABLE, currency)
    await session.execute(
        insert(A)
        .values(
            code=code,
            name=f"{OVERDRAFT_RECEIVABLE.name} ({currency})",
            kind="gl",
            gl_type=OVERDRAFT_RECEIVABLE.gl_type,
            currency=currency,
        )
        .on_conflict_do_nothing(index_elements=["code"])
    )
    found = await session.scalar(select(A.id).where(A.code == code))
    assert found is not None
    return found


async def _cover_overdraft(
    session: AsyncSession, req: ExecuteRequest, original: JournalResult
) -> tuple[str | None, list[Shortfall]]:
    """With an approved override, move what the mirror would overdraw onto the receivable, so the
    member account ends at zero and the debt is on the books. Computed under the account lock,
    after the holds were voided, from the balances as they are now."""
    guarded = await _lock_guarded(session, original)
    net = _mirror_net_debits(original)
    covered = [
        Shortfall(account_id=i, account=a.code, amount_minor=net[i] - max(_available(a), 0))
        for i, a in guarded.items()
        if net[i] - max(_available(a), 0) > 0
    ]
    if not covered:
        return None, []
    currency = original.postings[0].currency
    receivable = await _receivable(session, currency)
    cover_id = f"{req.reversal_id}:cover"
    await ledger_engine.post_journal(
        session,
        JournalRequest(
            journal_id=cover_id,
            kind="overdraft_cover",
            value_date=req.value_date,
            description=f"Approved overdraft for the reversal of {original.journal_id}",
            process_id=req.reversal_id,
            metadata={"reverses": original.journal_id},
            postings=[
                PostingLine(
                    debit_account_id=receivable,
                    credit_account_id=s.account_id,
                    amount_minor=s.amount_minor,
                    currency=currency,
                )
                for s in covered
            ],
        ),
    )
    return cover_id, covered


async def execute(session: AsyncSession, req: ExecuteRequest) -> ExecuteResult:
    """Void the holds and post the mirror (and an approved overdraft's cover) atomically."""
    journal_id = f"{req.reversal_id}:reverse"
    original = await ledger_engine.load_journal(session, req.journal_id)
    cover_id = f"{req.reversal_id}:cover"
    if original.reversed_by_journal_id == journal_id:  # a retry after the commit
        has_cover = await session.get(Journal, cover_id) is not None
        return ExecuteResult(
            reversal_journal_id=journal_id, cover_journal_id=cover_id if has_cover else None
        )
    if await is_closed(session, original.value_date):
        raise BankflowError(
            ErrorCode.PERIOD_CLOSED,
            f"the period {original.value_date:%Y-%m} of journal {original.journal_id!r} is closed",
        )
    if original.kind in LOAN_KINDS:
        await loan_reversal.lock(session, original)
    for hold_id in req.hold_ids:
        await ledger_holds.void_hold(
            session, VoidHoldRequest(hold_id=hold_id, reason="reversal approved: posting it")
        )
    cover, covered = (
        (None, []) if not req.override else await _cover_overdraft(session, req, original)
    )
    await ledger_engine.reverse_journal(
        session,
        ReversalRequest(
            original_journal_id=req.journal_id,
            journal_id=journal_id,
            value_date=req.value_date,
            description=req.description,
            process_id=req.reversal_id,
        ),
    )
    if original.kind in LOAN_KINDS:
        await loan_reversal.apply(session, original, req.reversal_id, req.value_date)
    return ExecuteResult(reversal_journal_id=journal_id, cover_journal_id=cover, covered=covered)


async def release(session: AsyncSession, req: ReleaseRequest) -> int:
    for hold_id in req.hold_ids:
        await ledger_holds.void_hold(session, VoidHoldRequest(hold_id=hold_id, reason=req.reason))
    return len(req.hold_ids)


async def record_event(session: AsyncSession, req: EventRecord) -> None:
    await session.execute(
        insert(ReversalEvent)
        .values(
            reversal_id=req.reversal_id,
            request_id=req.request_id,
            event_key=req.key,
            journal_id=req.journal_id,
            event=req.event,
            actor=req.actor,
            detail=req.detail[:2000],
        )
        .on_conflict_do_nothing(index_elements=["event_key"])
    )


async def notices(session: AsyncSession, req: NoticeRequest) -> list[NotificationRequest]:
    """One notice per member with an e-mail address whose account the original touched, naming
    the member by id: send_notification reads the address, so it never enters the history."""
    original = await ledger_engine.load_journal(session, req.journal_id)
    moved: dict[int, int] = defaultdict(int)  # what the reversal moves, member's view (+ credit)
    for p in original.postings:
        moved[p.debit_account_id] += p.amount_minor
        moved[p.credit_account_id] -= p.amount_minor
    rows = (
        await session.execute(
            select(A.id, A.code, A.currency, Member.id, Member.email.is_not(None), Currency.scale)
            .join(Member, Member.id == A.member_id)
            .join(Currency, Currency.code == A.currency)
            .where(A.id.in_(moved))
            .order_by(Member.id, A.id)
        )
    ).all()
    by_member: dict[int, NotificationRequest] = {}
    for account_id, code, currency, member_id, reachable, scale in rows:
        if not reachable:
            continue
        notice = by_member.setdefault(
            member_id,
            NotificationRequest(
                process_id=req.reversal_id,
                template=NOTICE_TEMPLATE,
                recipient_kind="member",
                recipient_id=member_id,
                context={
                    "journal_id": req.journal_id,
                    "reversal_journal_id": req.reversal_journal_id,
                    "reason_code": req.reason_code,
                    "accounts": [],
                },
            ),
        )
        amount = moved[account_id]
        notice.context["accounts"].append(
            {
                "account": code,
                "direction": "credit" if amount > 0 else "debit",
                "amount": to_major(abs(amount), int(scale)),
                "currency": currency,
            }
        )
    return list(by_member.values())


class ReversalActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def _run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        return await transaction(self.sessions, work)

    @activity.defn(name="prepare_reversal")
    async def prepare_reversal(self, req: PrepareRequest) -> ReversalPlan:
        return await self._run(lambda s: prepare(s, req))

    @activity.defn(name="execute_reversal")
    async def execute_reversal(self, req: ExecuteRequest) -> ExecuteResult:
        return await self._run(lambda s: execute(s, req))

    @activity.defn(name="release_reversal_holds")
    async def release_reversal_holds(self, req: ReleaseRequest) -> int:
        return await self._run(lambda s: release(s, req))

    @activity.defn(name="record_reversal_event")
    async def record_reversal_event(self, req: EventRecord) -> None:
        await self._run(lambda s: record_event(s, req))

    @activity.defn(name="reversal_notices")
    async def reversal_notices(self, req: NoticeRequest) -> list[NotificationRequest]:
        return await in_transaction(self.sessions, lambda s: notices(s, req))

    def all(self) -> list[Callable[..., Awaitable[object]]]:
        return [
            self.prepare_reversal,
            self.execute_reversal,
            self.release_reversal_holds,
            self.record_reversal_event,
            self.reversal_notices,
        ]
