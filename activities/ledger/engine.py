"""The double-entry ledger engine: journals and reversals, each inside the caller's transaction
(helpers never commit), or a journal on its own (a DirectPool: its statement commits itself).
Holds build on it in `activities.ledger.holds`.

Rules (DESIGN.md, "Ledger"):
- a journal and all its postings are written in one transaction, or nothing is;
- the journal id is chosen by the caller: the same id with the same content returns the stored
  journal, the same id with other content is a JournalConflict;
- the accounts a journal touches are locked in ascending id order, so two journals over the same
  accounts queue instead of deadlocking;
- an account flagged "debits must not exceed credits" never goes overdrawn, pending holds included.

A journal is one statement (`POST`): it locks the accounts, checks them (activities/ledger/checks),
claims the id and writes the postings and balances, or, when a check fails, writes nothing and
returns the locked rows, from which `check_deltas` names the refusal. One round trip, and no
transaction of its own to begin and commit: alone, a journal is atomic as a statement.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import cast

from psycopg.types.json import Jsonb
from sqlalchemy import BigInteger, Table, TextClause, any_, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from activities import metrics
from activities.db import pg_array, sqlstate
from activities.direct import Db, Params, Step, fetch, pipeline
from activities.ledger.batch import as_lines, content_hash
from activities.ledger.checks import LOCKED_SQL, Deltas, Locked, check_deltas, verdict_sql
from activities.tables import PERIOD_CLOSED_SQLSTATE, LedgerAccount
from schemas.errors import BankflowError, ErrorCode
from schemas.ledger import (
    JournalRequest,
    JournalResult,
    PostingLine,
    PostingView,
    ReversalRequest,
)

A = LedgerAccount
ACCOUNTS = cast(Table, LedgerAccount.__table__)
# A hold's balance change (activities/ledger/holds): one statement per touched account.
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
# FOR NO KEY UPDATE: the lock an UPDATE of non-key columns takes anyway. FOR UPDATE would also
# block the key-share locks of every posting inserted against the account elsewhere.
LOCK = (
    select(*(getattr(A, column) for column in Locked._fields))
    .where(A.id == any_(bindparam("ids", type_=ARRAY(BigInteger))))
    .order_by(A.id)
    .with_for_update(key_share=True)
)

# A journal in one statement. In the order Postgres runs it (each step reads the one before):
# lock every touched account in ascending id order (LockRows sits above the sort, so the locks
# are taken in that order; a row another transaction changed is re-read at its latest version);
# the verdict on those rows; the journal row, only if the verdict is yes, unless its id is taken
# (ON CONFLICT waits for a concurrent insert of it to commit or roll back, so two racing retries
# cannot both post); the balances and the postings, only if this statement inserted that row.
# The UPDATE meets rows it has locked itself at their latest version, as the locking read did.
# It returns the claim's created_at (NULL: nothing written) and the verdict; when that is no,
# the locked rows, for check_deltas to say why.
_CLAIM = """
    claim AS (
        INSERT INTO journals (id, kind, description, value_date, content_hash, process_id,
                              metadata, reverses_journal_id)
        SELECT :id, :kind, :description, CAST(:value_date AS date), :content_hash, :process_id,
               :metadata, :reverses
        FROM verdict WHERE ok
        ON CONFLICT (id) DO NOTHING
        RETURNING created_at
    )"""
_ANSWER = f"""
    SELECT c.created_at, v.ok, {", ".join("l." + column for column in Locked._fields)}
    FROM verdict v
    LEFT JOIN claim c ON true
    LEFT JOIN locked l ON NOT v.ok
"""
# Any journal, and any change of balances (a hold posted moves pending to posted): the changes
# per account and the posting lines as arrays.
POST = text(
    f"""
    WITH delta AS MATERIALIZED (
        SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:dp AS bigint[]), CAST(:cp AS bigint[]),
                             CAST(:dpe AS bigint[]), CAST(:cpe AS bigint[]),
                             CAST(:currencies AS text[]))
             AS d(id, dp, cp, dpe, cpe, currency)
    ), locked AS MATERIALIZED (
        SELECT {LOCKED_SQL} FROM ledger_accounts a
        WHERE a.id = ANY(CAST(:ids AS bigint[]))
        ORDER BY a.id
        FOR NO KEY UPDATE
    ), verdict AS MATERIALIZED (
        SELECT count(*) = cardinality(CAST(:ids AS bigint[]))
               AND coalesce(bool_and({verdict_sql("d.dp", "d.cp", "d.dpe", "d.cpe", "d.currency")}),
                            true) AS ok
        FROM locked l JOIN delta d USING (id)
    ), {_CLAIM}, balances AS (
        UPDATE ledger_accounts a
        SET debits_posted_minor = a.debits_posted_minor + d.dp,
            credits_posted_minor = a.credits_posted_minor + d.cp,
            debits_pending_minor = a.debits_pending_minor + d.dpe,
            credits_pending_minor = a.credits_pending_minor + d.cpe
        FROM delta d
        WHERE a.id = d.id AND (d.dp, d.cp, d.dpe, d.cpe) <> (0, 0, 0, 0)
          AND EXISTS (SELECT FROM claim)
    ), lines AS (
        INSERT INTO postings (journal_id, line, debit_account_id, credit_account_id,
                              amount_minor, currency)
        SELECT :id, p.line, p.debit, p.credit, p.amount, p.currency
        FROM unnest(CAST(:debits AS bigint[]), CAST(:credits AS bigint[]),
                    CAST(:amounts AS bigint[]), CAST(:line_currencies AS text[]))
             WITH ORDINALITY AS p(debit, credit, amount, currency, line)
        WHERE EXISTS (SELECT FROM claim)
    ) {_ANSWER}"""
)
# The same for the journal most postings are, one line from one account to another (a deposit, a
# withdrawal, a transfer), with its values as parameters: no arrays to parse and unnest, which
# were a third of what Postgres spent on such a journal (bench/ledger.py's floor costs it 0.3 ms,
# the array form 0.6, this one 0.45).
POST_ONE = text(
    f"""
    WITH locked AS MATERIALIZED (
        SELECT {LOCKED_SQL},
               CASE WHEN a.id = :debit THEN CAST(:amount AS bigint) ELSE 0 END AS dp,
               CASE WHEN a.id = :credit THEN CAST(:amount AS bigint) ELSE 0 END AS cp
        FROM ledger_accounts a
        WHERE a.id IN (:debit, :credit)
        ORDER BY a.id
        FOR NO KEY UPDATE
    ), verdict AS MATERIALIZED (
        SELECT count(*) = 2
               AND coalesce(bool_and({verdict_sql("l.dp", "l.cp", "0", "0", ":currency")}), true)
               AS ok
        FROM locked l
    ), {_CLAIM}, balances AS (
        UPDATE ledger_accounts a
        SET debits_posted_minor = a.debits_posted_minor + l.dp,
            credits_posted_minor = a.credits_posted_minor + l.cp
        FROM locked l
        WHERE a.id = l.id AND EXISTS (SELECT FROM claim)
    ), lines AS (
        INSERT INTO postings (journal_id, line, debit_account_id, credit_account_id,
                              amount_minor, currency)
        SELECT :id, 1, :debit, :credit, :amount, :currency
        WHERE EXISTS (SELECT FROM claim)
    ) {_ANSWER}"""
)
STORED_HASH = text("SELECT content_hash FROM journals WHERE id = :id")
# Why POST refused, in the order the checks applied when the journal row was claimed first: the
# id taken already (a replay, or a conflict), the original reversed already, the month closed.
# Then the accounts' own refusal (check_deltas).
REFUSED_FIRST = text(
    """
    SELECT (SELECT content_hash FROM journals WHERE id = :id),
           EXISTS (SELECT FROM journals WHERE reverses_journal_id = :reverses),
           EXISTS (SELECT FROM ledger_periods
                   WHERE period_start = date_trunc('month', CAST(:value_date AS date)))
    """
)
# A journal with its postings in line order (one row per posting) and the journal reversing it.
JOURNAL = text(
    """
    SELECT j.id, j.kind, j.value_date, j.description, j.reverses_journal_id,
           (SELECT r.id FROM journals r WHERE r.reverses_journal_id = j.id), j.created_at,
           p.line, p.debit_account_id, p.credit_account_id, p.amount_minor, p.currency
    FROM journals j LEFT JOIN postings p ON p.journal_id = j.id
    WHERE j.id = :id
    ORDER BY p.line
    """
)


def lock_step(deltas: Deltas) -> Step:
    """Lock the rows in ascending id order: two changes over the same accounts queue."""
    return LOCK, {"ids": sorted(deltas.by_account)}


def _post(
    req: JournalRequest, digest: str, deltas: Deltas, reverses: str | None, check_open: bool
) -> tuple[TextClause, Params]:
    """The statement that posts this journal with these changes, and its parameters: POST_ONE
    when the changes are exactly its one line's, else POST."""
    journal = {
        "id": req.journal_id,
        "kind": req.kind,
        "description": req.description,
        "value_date": req.value_date,
        "content_hash": digest,
        "reverses": reverses,
        "process_id": req.process_id,
        "metadata": Jsonb(req.metadata),
        "check_open": check_open,
    }
    if len(req.postings) == 1:
        [line] = req.postings
        alone = Deltas()
        alone.post(line.debit_account_id, line.credit_account_id, line.amount_minor, line.currency)
        if alone == deltas:
            return POST_ONE, journal | {
                "debit": line.debit_account_id,
                "credit": line.credit_account_id,
                "amount": line.amount_minor,
                "currency": line.currency,
            }
    return POST, journal | deltas.arrays() | {
        "debits": pg_array(p.debit_account_id for p in req.postings),
        "credits": pg_array(p.credit_account_id for p in req.postings),
        "amounts": pg_array(p.amount_minor for p in req.postings),
        "line_currencies": pg_array(p.currency for p in req.postings),
    }


async def write_journal(
    db: Db,
    req: JournalRequest,
    deltas: Deltas,
    *,
    reverses: str | None = None,
    check_open: bool = True,
) -> datetime | None:
    """Post the journal with these balance changes: its creation time, or None when the id was
    taken already (the caller decides between a replay and a conflict). A refusal raises its
    BankflowError and writes nothing, unless the id was taken already: a replay is answered as
    one even when the same journal would not fit now."""
    digest = content_hash(req.kind, req.value_date, as_lines(req.postings), reverses)
    statement, params = _post(req, digest, deltas, reverses, check_open)
    try:
        rows = await fetch(db, statement, params)
    except IntegrityError as exc:
        if "reverses_journal_id" in str(exc.orig):
            raise _already_reversed(reverses) from exc
        raise
    except DBAPIError as exc:
        # The journals_period_open trigger (migration 0004) refuses a value date in a closed
        # month, whoever posts: journals, held funds posted, reversals.
        if sqlstate(exc) == PERIOD_CLOSED_SQLSTATE:
            raise _period_closed(req.value_date) from exc
        raise
    created_at, ok = rows[0][0], rows[0][1]
    if ok:
        return cast(datetime | None, created_at)
    [(stored, reversed_already, closed)] = await fetch(
        db,
        REFUSED_FIRST,
        {"id": req.journal_id, "reverses": reverses, "value_date": req.value_date},
    )
    if stored is not None:
        return None
    if reversed_already:
        raise _already_reversed(reverses)
    if closed:
        raise _period_closed(req.value_date)
    check_deltas([row[2:] for row in rows if row[2] is not None], deltas, check_open=check_open)
    raise AssertionError("the ledger's statement refused a journal that check_deltas accepts")


def _already_reversed(journal_id: str | None) -> BankflowError:
    return BankflowError(ErrorCode.ALREADY_REVERSED, f"journal {journal_id!r} is already reversed")


def _period_closed(day: date) -> BankflowError:
    return BankflowError(
        ErrorCode.PERIOD_CLOSED,
        f"the period {day:%Y-%m} is closed: no journal may be dated {day.isoformat()}",
    )


async def _stored_hash(db: Db, journal_id: str) -> str | None:
    rows = await fetch(db, STORED_HASH, {"id": journal_id})
    return cast(str, rows[0][0]) if rows else None


async def apply_deltas(session: AsyncSession, deltas: Deltas, *, check_open: bool = True) -> None:
    """Lock, validate and update every touched account; raise before writing if any rule fails."""
    [rows] = await pipeline(session, lock_step(deltas))
    check_deltas(rows, deltas, check_open=check_open)
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
    if changes:
        await pipeline(session, (APPLY_DELTA, changes))


async def load_journal(db: Db, journal_id: str, *, created: bool = False) -> JournalResult:
    rows = await fetch(db, JOURNAL, {"id": journal_id})
    if not rows:
        raise BankflowError(ErrorCode.JOURNAL_NOT_FOUND, f"no journal {journal_id!r}")
    jid, kind, value_date, description, reverses, reversed_by, created_at = rows[0][:7]
    return JournalResult(
        journal_id=jid,
        kind=kind,
        value_date=value_date,
        description=description,
        reverses_journal_id=reverses,
        reversed_by_journal_id=reversed_by,
        created_at=created_at,
        created=created,
        postings=[
            PostingView(
                line=line, debit_account_id=debit, credit_account_id=credit,
                amount_minor=amount, currency=currency,
            )
            for *_, line, debit, credit, amount, currency in rows
            if line is not None
        ],
    )  # fmt: skip


async def post_journal(
    db: Db, req: JournalRequest, *, reverses: str | None = None
) -> JournalResult:
    """Post a journal atomically, or return the identical one already posted under its id: in
    the session's transaction, or, on a DirectPool, as a statement of its own."""
    for p in req.postings:
        if p.debit_account_id == p.credit_account_id:
            raise BankflowError(
                ErrorCode.INVALID_POSTING, "a posting must move money between two accounts"
            )
    deltas = Deltas()
    for p in req.postings:
        deltas.post(p.debit_account_id, p.credit_account_id, p.amount_minor, p.currency)
    created_at = await write_journal(db, req, deltas, reverses=reverses)
    if created_at is None:
        digest = content_hash(req.kind, req.value_date, as_lines(req.postings), reverses)
        if await _stored_hash(db, req.journal_id) != digest:
            raise BankflowError(
                ErrorCode.JOURNAL_CONFLICT,
                f"journal {req.journal_id!r} exists with different content",
            )
        metrics.replayed(db, "journal")
        return await load_journal(db, req.journal_id)
    metrics.journal_posted(db, req.kind, req.postings)
    # Built from what was just written rather than read back: the hot path stays short.
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
