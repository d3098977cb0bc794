"""`bankflow ledger verify`: prove the ledger's invariants from the rows themselves.

Each check is one set-based query that returns the offending rows (at most a few, for the report);
an empty answer means the invariant holds.
"""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from activities.ledger.batch import Line, content_hash
from activities.tables import Journal, Posting
from schemas.ledger import CheckResult, VerifyReport

SAMPLE = 5

CHECKS: dict[str, str] = {
    "every journal has postings": """
        SELECT j.id FROM journals j
        WHERE NOT EXISTS (SELECT 1 FROM postings p WHERE p.journal_id = j.id)
        LIMIT :n""",
    "every posting is in its accounts' currency": """
        SELECT p.id FROM postings p
        JOIN ledger_accounts d ON d.id = p.debit_account_id
        JOIN ledger_accounts c ON c.id = p.credit_account_id
        WHERE d.currency <> p.currency OR c.currency <> p.currency
        LIMIT :n""",
    "total debits equal total credits per currency": """
        SELECT currency FROM ledger_accounts GROUP BY currency
        HAVING sum(debits_posted_minor) <> sum(credits_posted_minor)
            OR sum(debits_pending_minor) <> sum(credits_pending_minor)
        LIMIT :n""",
    "cached posted balances equal the sum of postings": """
        SELECT a.code FROM ledger_accounts a
        LEFT JOIN (SELECT debit_account_id AS id, sum(amount_minor) AS s
                   FROM postings GROUP BY debit_account_id) d ON d.id = a.id
        LEFT JOIN (SELECT credit_account_id AS id, sum(amount_minor) AS s
                   FROM postings GROUP BY credit_account_id) c ON c.id = a.id
        WHERE a.debits_posted_minor <> coalesce(d.s, 0)
           OR a.credits_posted_minor <> coalesce(c.s, 0)
        LIMIT :n""",
    "cached pending balances equal the sum of pending holds": """
        SELECT a.code FROM ledger_accounts a
        LEFT JOIN (SELECT debit_account_id AS id, sum(amount_minor) AS s FROM holds
                   WHERE status = 'pending' GROUP BY debit_account_id) d ON d.id = a.id
        LEFT JOIN (SELECT credit_account_id AS id, sum(amount_minor) AS s FROM holds
                   WHERE status = 'pending' GROUP BY credit_account_id) c ON c.id = a.id
        WHERE a.debits_pending_minor <> coalesce(d.s, 0)
           OR a.credits_pending_minor <> coalesce(c.s, 0)
        LIMIT :n""",
    "no account overdrawn against its flags": """
        SELECT code FROM ledger_accounts
        WHERE (debits_must_not_exceed_credits
               AND debits_posted_minor + debits_pending_minor > credits_posted_minor)
           OR (credits_must_not_exceed_debits
               AND credits_posted_minor + credits_pending_minor > debits_posted_minor)
        LIMIT :n""",
    "every posted hold posted its own amount exactly once": """
        SELECT h.id FROM holds h
        LEFT JOIN postings p ON p.journal_id = h.journal_id
        WHERE h.status = 'posted'
        GROUP BY h.id, h.amount_minor, h.debit_account_id, h.credit_account_id
        HAVING count(p.id) <> 1 OR min(p.amount_minor) <> h.amount_minor
            OR min(p.debit_account_id) <> h.debit_account_id
            OR min(p.credit_account_id) <> h.credit_account_id
        LIMIT :n""",
    "a reversal mirrors its original": """
        SELECT r.id FROM journals r
        JOIN postings rp ON rp.journal_id = r.id
        LEFT JOIN postings op ON op.journal_id = r.reverses_journal_id AND op.line = rp.line
            AND op.debit_account_id = rp.credit_account_id
            AND op.credit_account_id = rp.debit_account_id AND op.amount_minor = rp.amount_minor
        WHERE r.reverses_journal_id IS NOT NULL AND op.id IS NULL
        LIMIT :n""",
    "append-only triggers are in place": """
        SELECT t.name FROM (VALUES ('journals_append_only'), ('postings_append_only'),
                                   ('audit_log_append_only')) AS t(name)
        WHERE NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgname = t.name
                          AND g.tgenabled IN ('O', 'A'))
        LIMIT :n""",
}


async def _content_unchanged(session: AsyncSession, batch: int = 5000) -> list[str]:
    """Recompute every journal's content hash from its stored postings (no posting changed)."""
    bad: list[str] = []
    last = ""
    while len(bad) < SAMPLE:
        journals = (
            await session.execute(
                select(
                    Journal.id,
                    Journal.kind,
                    Journal.value_date,
                    Journal.reverses_journal_id,
                    Journal.content_hash,
                )
                .where(Journal.id > last)
                .order_by(Journal.id)
                .limit(batch)
            )
        ).all()
        if not journals:
            break
        last = journals[-1].id
        lines: dict[str, list[Line]] = {j.id: [] for j in journals}
        postings = await session.execute(
            select(Posting)
            .where(Posting.journal_id.in_(list(lines)))
            .order_by(Posting.journal_id, Posting.line)
        )
        for p in postings.scalars():
            lines[p.journal_id].append(
                (p.debit_account_id, p.credit_account_id, p.amount_minor, p.currency)
            )
        for j in journals:
            if content_hash(j.kind, j.value_date, lines[j.id], j.reverses_journal_id) != (
                j.content_hash
            ):
                bad.append(j.id)
    return bad[:SAMPLE]


async def verify_ledger(session: AsyncSession) -> VerifyReport:
    """Run every check in one REPEATABLE READ snapshot, so they all see the same ledger."""
    await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    checks: list[CheckResult] = []
    for name, sql in CHECKS.items():
        offenders = [str(r[0]) for r in await session.execute(text(sql), {"n": SAMPLE})]
        checks.append(_result(name, offenders))
    checks.append(
        _result(
            "every journal's postings match its content hash", await _content_unchanged(session)
        )
    )
    return VerifyReport(ok=all(c.ok for c in checks), checks=checks)


def _result(name: str, offenders: list[str]) -> CheckResult:
    detail = "ok" if not offenders else "breached by " + ", ".join(offenders)
    return CheckResult(name=name, ok=not offenders, detail=detail)
