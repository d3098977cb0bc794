"""The rules a journal must pass before it may be reversed, each outcome recorded as a Check.

The API runs them before it starts a Reversal (a clear 4xx, nothing written); the workflow's
first activity runs them again inside the transaction that places the holds.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities import loan_reversal
from activities.ledger import engine as ledger_engine
from activities.ledger.periods import is_closed
from activities.tables import LedgerAccount as A
from schemas.errors import BankflowError, ErrorCode
from schemas.ledger import JournalResult
from schemas.reversals import LOAN_KINDS, MIRROR_KINDS, Check


async def check_reversible(
    session: AsyncSession, journal_id: str
) -> tuple[JournalResult | None, list[Check], BankflowError | None]:
    """Run the rules in order and record each outcome; stop at the first that fails.

    The API runs these before it starts a process (a clear 4xx, nothing written), the workflow's
    first activity runs them again inside the transaction that places the holds.
    """
    checks: list[Check] = []

    def ok(name: str, detail: str = "") -> None:
        checks.append(Check(name=name, ok=True, detail=detail))

    def refuse(name: str, code: ErrorCode, detail: str) -> BankflowError:
        checks.append(Check(name=name, ok=False, detail=detail))
        return BankflowError(code, detail)

    try:
        original = await ledger_engine.load_journal(session, journal_id)
    except BankflowError as exc:
        return None, checks, refuse("journal exists", exc.code, exc.detail)
    ok("journal exists", f"{original.kind} dated {original.value_date}")
    if original.reverses_journal_id is not None:
        detail = (
            f"journal {journal_id!r} is itself the reversal of {original.reverses_journal_id!r}"
        )
        return original, checks, refuse("not a reversal", ErrorCode.NOT_REVERSIBLE, detail)
    ok("not a reversal")
    if original.reversed_by_journal_id is not None:
        detail = (
            f"journal {journal_id!r} is already reversed by {original.reversed_by_journal_id!r}"
        )
        return original, checks, refuse("not yet reversed", ErrorCode.ALREADY_REVERSED, detail)
    ok("not yet reversed")
    if await is_closed(session, original.value_date):
        detail = f"the period {original.value_date:%Y-%m} of journal {journal_id!r} is closed"
        return original, checks, refuse("period open", ErrorCode.PERIOD_CLOSED, detail)
    ok("period open", f"{original.value_date:%Y-%m}")
    if original.kind in LOAN_KINDS:
        try:
            ok("kind reversible", await loan_reversal.check(session, original))
        except BankflowError as exc:
            return original, checks, refuse("kind reversible", exc.code, exc.detail)
    elif original.kind not in MIRROR_KINDS:
        detail = f"journals of kind {original.kind!r} are not reversed through this process"
        return original, checks, refuse("kind reversible", ErrorCode.NOT_REVERSIBLE, detail)
    else:
        ok("kind reversible", f"{original.kind}: mirror every posting")
    if len({p.currency for p in original.postings}) != 1:
        detail = "a journal across several currencies is not reversed through this process"
        return original, checks, refuse("one currency", ErrorCode.NOT_REVERSIBLE, detail)
    ids = {p.debit_account_id for p in original.postings} | {
        p.credit_account_id for p in original.postings
    }
    accounts = (await session.scalars(select(A).where(A.id.in_(ids)).order_by(A.id))).all()
    loans = [a.code for a in accounts if a.kind == "loan"]
    if loans and original.kind not in LOAN_KINDS:
        detail = f"the journal touches loan account {loans[0]}: loan reversal is not available yet"
        return original, checks, refuse("no loan account", ErrorCode.NOT_REVERSIBLE, detail)
    closed = [a.code for a in accounts if a.status != "open"]
    if closed:
        detail = f"account {closed[0]} is closed"
        return original, checks, refuse("accounts open", ErrorCode.ACCOUNT_CLOSED, detail)
    ok("accounts open")
    return original, checks, None
