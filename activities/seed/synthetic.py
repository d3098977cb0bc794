"""Synthetic load: `count` funded savings accounts with a month of activity, written set-based
for bench/month_end.py and the month-end tests, through the ledger's batch-posting primitives
(postings, hashed journals and cached balances exactly as the ledger engine would leave them)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from activities.ledger import batch
from activities.ledger.batch import Line
from activities.ledger.chart import CASH, MEMBER_SAVINGS, gl_code
from activities.savings import get_product
from activities.tables import Branch, LedgerAccount

SYNTHETIC_PER_MEMBER = 100


def synthetic_amounts(i: int, start: date) -> tuple[date, int, date | None, int]:
    """Account i's opening (date, amount) and its one movement in the month (date, +/-amount):
    varied balances, every 97th below a 10.00 minimum, every 50th opened mid-month."""
    opened = start + timedelta(days=14) if i % 50 == 49 else start - timedelta(days=1)
    opening = 500 if i % 97 == 96 else 5000 + (i * 7919) % 2_000_000
    day = start + timedelta(days=i % 28)
    if i % 3 == 0:
        return opened, opening, max(day, opened), 100 + (i * 31) % 50_000
    if i % 3 == 1 and day > opened:
        return opened, opening, day, -(opening // 3)
    return opened, opening, None, 0


async def seed_synthetic_accounts(
    session: AsyncSession, *, tag: str, count: int, product_code: str, period_start: date
) -> tuple[int, int]:
    """`count` funded savings accounts on a product with a month of activity, written set-based
    (postings, hashed journals and cached balances exactly as the ledger engine would leave
    them). Returns the first and last ledger account id."""
    product = await get_product(session, product_code)
    cur = product.currency
    rows = await session.execute(select(LedgerAccount.code, LedgerAccount.id))
    gl = {code: account_id for code, account_id in rows}
    cash, control = gl[gl_code(CASH, cur)], gl[gl_code(MEMBER_SAVINGS, cur)]
    branch_id = await session.scalar(select(Branch.id).order_by(Branch.id).limit(1))
    members = (
        await session.scalars(
            text(
                "INSERT INTO members (member_number, first_name, last_name, date_of_birth, "
                "branch_id) SELECT :tag || 'M' || g, 'Synthetic', :tag, DATE '1980-01-01', "
                ":branch FROM generate_series(0, :n) g RETURNING id"
            ),
            {"tag": tag, "branch": branch_id, "n": count // SYNTHETIC_PER_MEMBER},
        )
    ).all()
    ids = (
        await session.scalars(
            text(
                "INSERT INTO ledger_accounts (code, name, kind, gl_type, currency, member_id, "
                "branch_id, control_account_id, debits_must_not_exceed_credits) "
                "SELECT :tag || lpad(g::text, 9, '0'), 'Synthetic savings', 'savings', "
                "'liability', :cur, (CAST(:members AS int[]))[g / :per + 1], :branch, :control, "
                "true FROM generate_series(0, :n - 1) g ORDER BY g RETURNING id"
            ),
            {"tag": tag, "cur": cur, "members": list(members), "per": SYNTHETIC_PER_MEMBER,
             "branch": branch_id, "control": control, "n": count},
        )
    ).all()  # fmt: skip
    journals: dict[tuple[str, date], list[Line]] = defaultdict(list)
    opened_on: list[date] = []
    credits: list[int] = []
    debits: list[int] = []
    for i, account_id in enumerate(ids):
        opened, opening, moved_on, moved = synthetic_amounts(i, period_start)
        opened_on.append(opened)
        journals[("deposit", opened)].append((cash, account_id, opening, cur))
        if moved_on is not None and moved > 0:
            journals[("deposit", moved_on)].append((cash, account_id, moved, cur))
        elif moved_on is not None and moved < 0:
            journals[("withdrawal", moved_on)].append((account_id, cash, -moved, cur))
        credits.append(opening + max(moved, 0))
        debits.append(max(-moved, 0))
    await _write_synthetic_journals(session, tag, journals)
    await session.execute(
        text(
            "INSERT INTO savings_accounts (account_id, product_id, opened_on) "
            "SELECT a, :product, o FROM unnest(CAST(:ids AS bigint[]), CAST(:opened AS date[])) "
            "AS u(a, o)"
        ),
        {"product": product.id, "ids": list(ids), "opened": opened_on},
    )
    # The accounts are new (zero balances), so adding is setting; the cash GL row last.
    await batch.add_to_balances(session, ids=list(ids), credits=credits, debits=debits)
    await batch.update_gl(session, {cash: (sum(credits), sum(debits))})
    return ids[0], ids[-1]


async def _write_synthetic_journals(
    session: AsyncSession,
    tag: str,
    journals: dict[tuple[str, date], list[Line]],
    chunk: int = 15000,
) -> None:
    for (kind, value_date), all_lines in sorted(journals.items()):
        for n in range(0, len(all_lines), chunk):
            await batch.insert_journal(
                session,
                journal_id=f"synthetic-{tag}-{kind}-{value_date.isoformat()}-{n // chunk}",
                kind=kind,
                description="synthetic load",
                value_date=value_date,
                lines=all_lines[n : n + chunk],
            )
