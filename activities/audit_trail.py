"""The audit log in Postgres: writing entries once, and the compliance read model.

`audit_log` is append-only (triggers in migration 0001). An entry carries an id the API chose,
so writing it again - a retry after a lost commit, a spool flushed twice - adds nothing.
"""

from __future__ import annotations

from pydantic import TypeAdapter
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from activities.direct import DirectPool
from activities.tables import AuditEntry, Loan, Member
from schemas.audit import AuditPage, AuditRecord, AuditView

# The entries as one JSON array, each a row of the record's columns: one statement (atomic, with
# no transaction to begin and commit around it) and one round trip whatever the batch holds.
_COLUMNS = {
    "entry_id": "uuid",
    "at": "timestamptz",
    "actor_user_id": "bigint",
    "actor_username": "text",
    "action": "text",
    "resource": "text",
    "client_address": "inet",
    "user_agent": "text",
    "idempotency_key": "text",
    "member_numbers": "text[]",
    "outcome_status": "integer",
    "outcome": "text",
}
assert set(_COLUMNS) == set(AuditRecord.model_fields), "every field of a record, typed once"
_WRITE = text(
    f"""
    INSERT INTO audit_log ({", ".join(_COLUMNS)})
    SELECT {", ".join(_COLUMNS)}
    FROM jsonb_to_recordset(CAST(:entries AS jsonb))
         AS r({", ".join(f"{name} {kind}" for name, kind in _COLUMNS.items())})
    ON CONFLICT (entry_id) DO NOTHING
    """
)
_ENTRIES = TypeAdapter(list[AuditRecord])


async def write_entries(db: DirectPool, entries: list[AuditRecord]) -> None:
    """The entries in one statement; one already written is left as it is."""
    if entries:
        await db.execute(_WRITE, {"entries": _ENTRIES.dump_json(entries).decode()})


async def audit_page(
    session: AsyncSession, *, member: str | None, before: int | None, limit: int
) -> AuditPage:
    """Entries newest first (in the order they were written), optionally only those naming
    `member`: the reads whose answer showed it and the commands on its path."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    if member is not None:
        query = query.where(AuditEntry.member_numbers.contains([member]))
    if before is not None:
        query = query.where(AuditEntry.id < before)
    rows = list(await session.scalars(query))
    items = [
        AuditView(
            id=row.id,
            at=row.at,
            actor_user_id=row.actor_user_id,
            actor_username=row.actor_username,
            action=row.action,
            resource=row.resource,
            client_address=str(row.client_address) if row.client_address else None,
            idempotency_key=row.idempotency_key,
            member_numbers=row.member_numbers or [],
            outcome_status=row.outcome_status,
            outcome=row.outcome,
        )
        for row in rows[:limit]
    ]
    return AuditPage(items=items, next_cursor=items[-1].id if len(rows) > limit else None)


async def loan_member(session: AsyncSession, loan_number: str) -> str | None:
    """The member number of a loan's applicant, for reads whose answer does not name it."""
    return await session.scalar(
        select(Member.member_number)
        .join(Loan, Loan.member_id == Member.id)
        .where(Loan.loan_number == loan_number)
    )
