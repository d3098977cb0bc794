"""The double-entry ledger engine: journals and reversals, each inside the caller's transaction
(helpers never commit). Holds build on it in `activities.ledger.holds`.

Rules (DESIGN.md, "Ledger"):
- a journal and all its postings are written in one transaction, or nothing is;
- the journal id is chosen by the caller: the same id with the same content returns the stored
  journal, the same id with other content is a JournalConflict;
- the accounts a journal touches are locked in ascending id order, so two journals over the same
  accounts queue instead of deadlocking;
- an account flagged "debits must not exceed credits" never goes overdrawn, pending holds included.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, cast

from psycopg.types.json import Jsonb
from sqlalchemy import BigInteger, Table, any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from activities import metrics
from activities.db import sqlstate
from activities.direct import Step, binds, pipeline
from activities.ledger.batch import as_lines, content_hash
from activities.tables import PERIOD_CLOSED_SQLSTATE, Journal, LedgerAccount, Posting
from schemas.errors import BankflowError, ErrorCode
from schemas.ledger import (
    JournalRequest,
    JournalResult,
    PostingLine,
    PostingView,
    ReversalRequest,
)

A = LedgerAccount
JOURNALS = cast(Table, Journal.__table__)
POSTINGS = cast(Table, Posting.__table__)


@dataclass
class _Delta:
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def nonzero(self) -> bool:
        return any(
            (self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending)
        )


@dataclass
class Deltas:
    by_account: dict[int, _Delta] = field(default_factory=lambda: defaultdict(_Delta))
    currency_of: dict[int, str] = field(default_factory=dict)

    def post(self, debit: int, credit: int, amount: int, currency: str) -> None:
        self.by_account[debit].debits_posted += amount
        self.by_account[credit].credits_posted += amount
        self.currency_of[debit] = self.currency_of[credit] = currency

    def pend(self, debit: int, credit: int, amount: int, currency: str) -> None:
        self.by_account[debit].debits_pending += amount
        self.by_account[credit].credits_pending += amount
        self.currency_of[debit] = self.currency_of[credit] = currency


ACCOUNTS = cast(Table, LedgerAccount.__table__)
LOCKED_COLUMNS = (
    A.id,
    A.code,
    A.status,
    A.currency,
    A.debits_must_not_exceed_credits,
    A.credits_must_not_exceed_debits,
    A.debits_posted_minor,
    A.credits_posted_minor,
    A.debits_pending_minor,
    A.credits_pending_minor,
)
# One statement for every touched account, sent as one batch (executemany).
APPLY_DELTA = (
    update(ACCOUNTS)
    .where(ACCOUNTS.c.id == bindparam("account_id"))
    .values(
        debits_posted_minor=ACCOUNTS.c.debits_posted_minor + bindparam("dp"),
        credits_posted_minor=ACCOUNTS.c.credits_posted_minor + bindparam("cp"),
        debits_pending_minor=ACCOUNTS.c.debits_pending_minor + bindparam("dpe"),
        credits_pending_minor=ACCOUNTS.c.credits_pending_minor + bindparam("cpe"),
    )
)


# A journal's writes on the engine's hot path run as pipelines (activities/direct.py): claiming
# the id and locking the accounts is one round trip, the balance updates and the postings a
# second, where each statement through the session was a round trip of its own.
CLAIM = (
    insert(JOURNALS)
    .values(
        binds(
            "id",
            "kind",
            "description",
            "value_date",
            "content_hash",
            "process_id",
            "metadata",
            reverses_journal_id="reverses",
        )
    )
    .on_conflict_do_nothing(index_elements=["id"])
    .returning(JOURNALS.c.created_at)
)
# FOR NO KEY UPDATE: the lock an UPDATE of non-key columns takes anyway. FOR UPDATE would also
# block the key-share locks of every posting inserted against the account elsewhere.
LOCK = (
    select(*LOCKED_COLUMNS)
    .where(A.id == any_(bindparam("ids", type_=ARRAY(BigInteger))))
    .order_by(A.id)
    .with_for_update(key_share=True)
)
WRITE_POSTING = insert(POSTINGS).values(
    binds("journal_id", "line", "debit_account_id", "credit_account_id", "amount_minor", "currency")
)


class Locked(NamedTuple):
    """An account row as LOCK returns it (LOCKED_COLUMNS, in order)."""

    id: int
    code: str
    status: str
    currency: str
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    debits_posted_minor: int
    credits_posted_minor: int
    debits_pending_minor: int
    credits_pending_minor: int


def lock_step(deltas: Deltas) -> Step:
    """Lock the rows in ascending id order: two journals over the same accounts queue."""
    return LOCK, {"ids": sorted(deltas.by_account)}


def claim_step(req: JournalRequest, digest: str, reverses: str | None) -> Step:
    """Insert the journal row unless its id is taken (claim() reads the answer)."""
    return CLAIM, {
        "id": req.journal_id,
        "kind": req.kind,
        "description": req.description,
        "value_date": req.value_date,
        "content_hash": digest,
        "reverses": reverses,
        "process_id": req.process_id,
        "metadata": Jsonb(req.metadata),
    }


def write_steps(deltas: Deltas, journal_id: str | None, lines: list[PostingLine]) -> list[Step]:
    """Move the touched accounts' balances and, for a journal, write its postings."""
    changes = [
        {
            "account_id": account_id,
            "dp": delta.debits_posted,
            "cp": delta.credits_posted,
            "dpe": delta.debits_pending,
            "cpe": delta.credits_pending,
        }
        for account_id, delta in sorted(deltas.by_account.items())
        if delta.nonzero()
    ]
    steps: list[Step] = [(APPLY_DELTA, changes)] if changes else []
    if lines:
        rows = [
            {
                "journal_id": journal_id,
                "line": n,
                "debit_account_id": p.debit_account_id,
                "credit_account_id": p.credit_account_id,
                "amount_minor": p.amount_minor,
                "currency": p.currency,
            }
            for n, p in enumerate(lines, start=1)
        ]
        steps.append((WRITE_POSTING, rows))
    return steps


def check_deltas(rows: list[tuple[Any, ...]], deltas: Deltas, *, check_open: bool = True) -> None:
    """Raise before anything is written if a locked account refuses its delta: missing, closed,
    in another currency, or overdrawn (pending holds included)."""
    accounts = {row[0]: Locked(*row) for row in rows}
    missing = [i for i in sorted(deltas.by_account) if i not in accounts]
    if missing:
        raise BankflowError(ErrorCode.ACCOUNT_NOT_FOUND, f"no ledger account {missing[0]}")
    for account_id, delta in sorted(deltas.by_account.items()):
        acc = accounts[account_id]
        if check_open and acc.status != "open":
            raise BankflowError(ErrorCode.ACCOUNT_CLOSED, f"account {acc.code} is closed")
        if acc.currency != deltas.currency_of[account_id]:
            raise BankflowError(
                ErrorCode.CURRENCY_MISMATCH,
                f"account {acc.code} is in {acc.currency}, not {deltas.currency_of[account_id]}",
            )
        debits = acc.debits_posted_minor + acc.debits_pending_minor
        credits = acc.credits_posted_minor + acc.credits_pending_minor
        new_debits = debits + delta.debits_posted + delta.debits_pending
        new_credits = credits + delta.credits_posted + delta.credits_pending
        new_credits_posted = acc.credits_posted_minor + delta.credits_posted
        new_debits_posted = acc.debits_posted_minor + delta.debits_posted
        grows_debits = delta.debits_posted + delta.debits_pending > 0
        grows_credits = delta.credits_posted + delta.credits_pending > 0
        if acc.debits_must_not_exceed_credits and grows_debits and new_debits > new_credits_posted:
            raise BankflowError(
                ErrorCode.INSUFFICIENT_FUNDS, f"insufficient funds in account {acc.code}"
            )
        if acc.credits_must_not_exceed_debits and grows_credits and new_credits > new_debits_posted:
            raise BankflowError(
                ErrorCode.INSUFFICIENT_FUNDS,
                f"account {acc.code} cannot be credited beyond its debits",
            )


async def apply_deltas(session: AsyncSession, deltas: Deltas, *, check_open: bool = True) -> None:
    """Lock, validate and update every touched account; raise before writing if any rule fails."""
    [rows] = await pipeline(session, lock_step(deltas))
    check_deltas(rows, deltas, check_open=check_open)
    await pipeline(session, *write_steps(deltas, None, []))


async def load_journal(
    session: AsyncSession, journal_id: str, *, created: bool = False
) -> JournalResult:
    journal = await session.get(Journal, journal_id)
    if journal is None:
        raise BankflowError(ErrorCode.JOURNAL_NOT_FOUND, f"no journal {journal_id!r}")
    postings = (
        await session.scalars(
            select(Posting).where(Posting.journal_id == journal_id).order_by(Posting.line)
        )
    ).all()
    reversed_by = await session.scalar(
        select(Journal.id).where(Journal.reverses_journal_id == journal_id)
    )
    return JournalResult(
        journal_id=journal.id,
        kind=journal.kind,
        value_date=journal.value_date,
        description=journal.description,
        reverses_journal_id=journal.reverses_journal_id,
        reversed_by_journal_id=reversed_by,
        created_at=journal.created_at,
        created=created,
        postings=[
            PostingView(
                line=p.line,
                debit_account_id=p.debit_account_id,
                credit_account_id=p.credit_account_id,
                amount_minor=p.amount_minor,
                currency=p.currency,
            )
            for p in postings
        ],
    )


async def claim(
    session: AsyncSession, req: JournalRequest, digest: str, reverses: str | None, *also: Step
) -> tuple[datetime | None, list[list[tuple[Any, ...]]]]:
    """Insert the journal row, or find the one already there, in one round trip with `also`
    (the account locks): its creation time when this call owns it, None when an identical
    journal was there already, and the rows of `also`.

    ON CONFLICT DO NOTHING waits for a concurrent insert of the same id to commit or roll back,
    so two racing retries cannot both post.
    """
    try:
        [inserted, *rest] = await pipeline(session, claim_step(req, digest, reverses), *also)
    except IntegrityError as exc:
        if "reverses_journal_id" in str(exc.orig):
            raise BankflowError(
                ErrorCode.ALREADY_REVERSED, f"journal {reverses!r} is already reversed"
            ) from exc
        raise
    except DBAPIError as exc:
        # The journals_period_open trigger (migration 0004) refuses a value date in a closed
        # month: post_journal, post_hold and reverse_journal all claim their id here.
        if sqlstate(exc) == PERIOD_CLOSED_SQLSTATE:
            raise BankflowError(
                ErrorCode.PERIOD_CLOSED,
                f"the period {req.value_date:%Y-%m} is closed: no journal may be dated "
                f"{req.value_date.isoformat()}",
            ) from exc
        raise
    if inserted:
        return cast(datetime, inserted[0][0]), rest
    stored = await session.scalar(select(Journal.content_hash).where(Journal.id == req.journal_id))
    if stored != digest:
        raise BankflowError(
            ErrorCode.JOURNAL_CONFLICT,
            f"journal {req.journal_id!r} exists with different content",
        )
    return None, rest


async def post_journal(
    session: AsyncSession, req: JournalRequest, *, reverses: str | None = None
) -> JournalResult:
    """Post a journal atomically, or return the identical one already posted under its id."""
    for p in req.postings:
        if p.debit_account_id == p.credit_account_id:
            raise BankflowError(
                ErrorCode.INVALID_POSTING, "a posting must move money between two accounts"
            )
    digest = content_hash(req.kind, req.value_date, as_lines(req.postings), reverses)
    deltas = Deltas()
    for p in req.postings:
        deltas.post(p.debit_account_id, p.credit_account_id, p.amount_minor, p.currency)
    # A replay takes the account locks too, for the moment its transaction lasts: one round
    # trip for every posting beats two for the first.
    created_at, [locked] = await claim(session, req, digest, reverses, lock_step(deltas))
    if created_at is None:
        metrics.replayed(session, "journal")
        return await load_journal(session, req.journal_id)
    check_deltas(locked, deltas)
    await pipeline(session, *write_steps(deltas, req.journal_id, req.postings))
    metrics.journal_posted(session, req.kind, req.postings)
    # Built from what was just written rather than read back: the hot path stays short, and
    # the account locks are held for less time.
    return JournalResult(
        journal_id=req.journal_id,
        kind=req.kind,
        value_date=req.value_date,
        description=req.description,
        reverses_journal_id=reverses,
        created_at=created_at,
        created=True,
        postings=[
            PostingView(line=n, **p.model_dump()) for n, p in enumerate(req.postings, start=1)
        ],
    )


async def reverse_journal(session: AsyncSession, req: ReversalRequest) -> JournalResult:
    """Post the mirror image of a journal (debit and credit swapped), linked to it, once."""
    original = await load_journal(session, req.original_journal_id)
    if original.reverses_journal_id is not None:
        raise BankflowError(
            ErrorCode.NOT_REVERSIBLE, f"journal {original.journal_id!r} is itself a reversal"
        )
    mirrored = [
        PostingLine(
            debit_account_id=p.credit_account_id,
            credit_account_id=p.debit_account_id,
            amount_minor=p.amount_minor,
            currency=p.currency,
        )
        for p in original.postings
    ]
    journal = JournalRequest(
        journal_id=req.journal_id,
        kind="reversal",
        value_date=req.value_date,
        postings=mirrored,
        description=req.description or f"Reversal of {original.journal_id}",
        process_id=req.process_id,
    )
    if original.reversed_by_journal_id not in (None, req.journal_id):
        raise BankflowError(
            ErrorCode.ALREADY_REVERSED,
            f"journal {original.journal_id!r} is already reversed by "
            f"{original.reversed_by_journal_id!r}",
        )
    return await post_journal(session, journal, reverses=original.journal_id)
