"""Month-end savings interest, a batch of accounts at a time, with set-based SQL.

One batch = one account-id range = one transaction, and no Python per account:
1. lock the range's eligible savings accounts (open in the period, not yet in
   `interest_postings` for it) in ascending id order;
2. price them into a temporary table: monthly-compounding products in Postgres, with the rules
   of `domain.interest` as one statement (`activities.interest_sql`); daily-compounding ones,
   which compound each day on the last, with `domain.interest` itself;
3. write from that table, set-based: one journal for the batch with one posting per account for
   its net interest (interest expense -> account) and one per currency for the tax the batch
   withheld (interest expense -> withholding tax payable); one `interest_postings` row per
   account (gross, tax and carry: what the member's statement shows beside the net line); the
   member balances in one UPDATE; and the GL side aggregated, one UPDATE per GL account, last,
   so the interest expense row is held for milliseconds, not for the batch.

One net posting per account instead of a gross credit and a tax debit halves the rows a
month-end writes (its largest cost); the member still sees gross, tax and net for the period,
from the interest record, and the GL totals are the same.

Exactly once per (account, period): the `interest_postings` primary key, written in the same
transaction as the journal; a retried or re-run batch finds its accounts there and posts
nothing. An advisory lock per (period, range) makes two attempts of one batch queue instead of
racing. The journal's content hash is computed in SQL exactly as `activities.ledger.batch`
computes it, so `ledger verify` recomputes the same hash from the stored postings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from activities.db import sqlstate, without_jit
from activities.interest_sql import PENDING, PRICE, PRICED
from activities.ledger import batch
from activities.ledger.chart import INTEREST_EXPENSE, WITHHOLDING_TAX, gl_code
from activities.month_end_daily import price_daily_compounding
from activities.tables import PERIOD_CLOSED_SQLSTATE, LedgerAccount
from domain.periods import period_bounds, previous_period
from schemas.errors import BankflowError, ErrorCode
from schemas.month_end import (
    BatchRequest,
    BatchResult,
)

JOURNAL_KIND = "interest"
# postings.line is SMALLINT: a line per account (and one per currency) stays under 32767.
MAX_BATCH_ACCOUNTS = 15000


ELIGIBLE = """
    FROM savings_accounts s
    JOIN ledger_accounts a ON a.id = s.account_id
    WHERE s.opened_on <= :end
      AND (a.closed_at IS NULL OR a.closed_at::date >= :start)
"""
LOCK_ACCOUNTS = text(
    "SELECT count(*) FROM (SELECT 1"
    + ELIGIBLE
    + PENDING
    + " ORDER BY s.account_id FOR UPDATE OF a) locked"
)
COUNT_DONE = text(
    "SELECT count(*) FROM interest_postings WHERE period = :period "
    "AND account_id BETWEEN :lo AND :hi"
)
# The batch's lines: one per account with net interest (in account order), then one per
# currency for the tax withheld; `gl` maps each currency to its expense and tax GL accounts.
LINES = f"""
    gl AS (SELECT * FROM unnest(CAST(:gl_currencies AS text[]), CAST(:gl_expense AS bigint[]),
                                CAST(:gl_tax AS bigint[])) AS g(currency, expense, tax)),
    lines AS (
        SELECT row_number() OVER (ORDER BY k, account_id, currency) AS line, debit, credit,
               amount, currency
        FROM (SELECT 0 AS k, p.account_id, g.expense AS debit,
                     p.account_id AS credit, p.posted_minor - p.tax_minor AS amount, p.currency
              FROM {PRICED} p JOIN gl g USING (currency)
              WHERE p.posted_minor - p.tax_minor > 0
              UNION ALL
              SELECT 1, 0, g.expense, g.tax, sum(p.tax_minor), p.currency
              FROM {PRICED} p JOIN gl g USING (currency)
              GROUP BY p.currency, g.expense, g.tax HAVING sum(p.tax_minor) > 0) l
    )
"""
# The journal and its postings in one statement. The content hash is
# activities.ledger.batch.content_hash's canonical JSON, built in SQL.
INSERT_JOURNAL = text(
    "WITH"
    + LINES
    + r""",
    journal AS (
        INSERT INTO journals (id, kind, description, value_date, content_hash, process_id,
                              metadata)
        SELECT :id, CAST(:kind AS text), :description, :value_date,
               encode(sha256(convert_to(
                   '{"kind":' || to_json(CAST(:kind AS text)) || ',"value_date":"'
                   || :value_iso || '","reverses"\:null,"postings":['
                   || string_agg('[' || debit || ',' || credit || ',' || amount || ','
                                 || to_json(currency) || ']', ',' ORDER BY line)
                   || ']}', 'UTF8')), 'hex'),
               :process_id, CAST(:metadata AS jsonb)
        FROM lines HAVING count(*) > 0
        RETURNING id
    )
    INSERT INTO postings (journal_id, line, debit_account_id, credit_account_id, amount_minor,
                          currency)
    SELECT j.id, l.line, l.debit, l.credit, l.amount, l.currency FROM lines l, journal j
    """
)
INSERT_INTEREST = text(
    f"""
    INSERT INTO interest_postings (account_id, period, journal_id, currency, earned,
                                   posted_minor, tax_minor, accrued, residue)
    SELECT account_id, :period, CASE WHEN posted_minor > 0 THEN :journal_id END, currency,
           earned, posted_minor, tax_minor, accrued, residue
    FROM {PRICED}
    """
)
CREDIT_MEMBERS = text(
    f"""
    UPDATE ledger_accounts a
    SET credits_posted_minor = a.credits_posted_minor + p.posted_minor - p.tax_minor
    FROM {PRICED} p
    WHERE a.id = p.account_id AND p.posted_minor - p.tax_minor > 0
    """
)
TOTALS = text(
    f"SELECT currency, sum(posted_minor) AS gross, sum(tax_minor) AS tax FROM {PRICED}"
    " GROUP BY currency ORDER BY currency"
)


async def _gl_ids(session: AsyncSession, currencies: set[str]) -> dict[tuple[str, str], int]:
    """(GL number, currency) -> ledger account id of interest expense and withholding tax."""
    codes = {
        gl_code(gl, cur): (gl.number, cur)
        for cur in currencies
        for gl in (INTEREST_EXPENSE, WITHHOLDING_TAX)
    }
    rows = await session.execute(
        select(LedgerAccount.code, LedgerAccount.id).where(LedgerAccount.code.in_(list(codes)))
    )
    found: dict[str, int] = {code: account_id for code, account_id in rows}
    for code in sorted(codes):
        if code not in found:
            raise BankflowError(ErrorCode.ACCOUNT_NOT_FOUND, f"no GL account {code}")
    return {codes[code]: account_id for code, account_id in found.items()}


async def post_interest_batch(
    session: AsyncSession, req: BatchRequest, heartbeat: Callable[[str], None]
) -> BatchResult:
    """Price and post one range of accounts for a period, exactly once (see the module doc)."""
    if req.last_account_id - req.first_account_id < 0:
        raise BankflowError(ErrorCode.VALIDATION, "an empty account range")
    start, end = period_bounds(req.period)
    await without_jit(session)
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"month-end:{req.period}:{req.first_account_id}"},
    )
    params: dict[str, object] = {
        "start": start,
        "end": end,
        "lo": req.first_account_id,
        "hi": req.last_account_id,
        "period": req.period,
    }
    locked = int(await session.scalar(LOCK_ACCOUNTS, params) or 0)
    if locked > MAX_BATCH_ACCOUNTS:
        raise BankflowError(ErrorCode.VALIDATION, f"a batch holds at most {MAX_BATCH_ACCOUNTS}")
    already = int(await session.scalar(COUNT_DONE, params) or 0)
    if not locked:
        return BatchResult(
            accounts=already, posted_now=0, journal_id=None, interest_minor={}, tax_minor={}
        )
    heartbeat("locked")
    await session.execute(
        PRICE, {**params, "prev": previous_period(req.period), "month": end.month}
    )
    await price_daily_compounding(session, req, params)
    heartbeat("priced")
    # Another run may have posted part of this range (a different batch size): the suffix
    # keeps this journal's id distinct from that one's while staying deterministic.
    journal_id = f"month-end:{req.period}:{req.first_account_id}-{req.last_account_id}"
    if already:
        journal_id += f"+{already}"
    gross, tax = await _write(session, req, journal_id, end)
    heartbeat("written")
    return BatchResult(
        accounts=already + locked,
        posted_now=locked,
        journal_id=journal_id if gross else None,
        interest_minor=gross,
        tax_minor=tax,
    )


async def _write(
    session: AsyncSession, req: BatchRequest, journal_id: str, value_date: date
) -> tuple[dict[str, int], dict[str, int]]:
    """Everything from the priced table, set-based; the GL rows last. Returns the gross
    interest and the tax per currency."""
    totals = (await session.execute(TOTALS)).all()
    gross = {r.currency: int(r.gross) for r in totals if r.gross}
    tax = {r.currency: int(r.tax) for r in totals if r.tax}
    gl = await _gl_ids(session, set(gross))
    currencies = sorted(gross)
    try:
        await session.execute(
            INSERT_JOURNAL,
            {
                "gl_currencies": currencies,
                "gl_expense": [gl[(INTEREST_EXPENSE.number, c)] for c in currencies],
                "gl_tax": [gl[(WITHHOLDING_TAX.number, c)] for c in currencies],
                "id": journal_id,
                "kind": JOURNAL_KIND,
                "description": f"Savings interest {req.period}",
                "value_date": value_date,
                "value_iso": value_date.isoformat(),
                "process_id": req.workflow_id,
                # The run's tag tells this run's postings from an earlier, interrupted run's.
                "metadata": json.dumps(
                    {
                        "period": req.period,
                        "run": req.run_id,
                        "accounts": [req.first_account_id, req.last_account_id],
                    }
                ),
            },
        )
    except DBAPIError as exc:
        if sqlstate(exc) == PERIOD_CLOSED_SQLSTATE:
            raise BankflowError(
                ErrorCode.PERIOD_CLOSED, f"the period {req.period} is closed for postings"
            ) from exc
        raise
    await session.execute(INSERT_INTEREST, {"period": req.period, "journal_id": journal_id})
    await session.execute(CREDIT_MEMBERS)
    # Last: the GL rows every batch shares are locked only for the moment before commit.
    # Interest expense is debited the gross (net to members + tax), the payable credited the tax.
    moves: dict[int, tuple[int, int]] = {}
    for cur, amount in gross.items():
        moves[gl[(INTEREST_EXPENSE.number, cur)]] = (amount, 0)
        if tax.get(cur):
            moves[gl[(WITHHOLDING_TAX.number, cur)]] = (0, tax[cur])
    await batch.update_gl(session, moves)
    return gross, tax
