"""Savings products and enrolment: create and list products, put savings accounts on them, and
turn a product row into the interest calculator's terms. Each function runs inside the caller's
transaction."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from activities.accounts import get_account
from activities.ledger import batch
from activities.ledger import engine as ledger_engine
from activities.ledger.batch import Line
from activities.ledger.chart import CASH, MEMBER_SAVINGS, gl_code
from activities.tables import Branch, Currency, LedgerAccount, SavingsAccount, SavingsProduct
from domain.interest import Terms, Tier
from domain.money import AmountError, to_major, to_minor
from schemas.errors import BankflowError, ErrorCode
from schemas.ledger import JournalRequest, PostingLine
from schemas.savings import EnrollmentView, ProductCreate, ProductView, TierView


async def _scale(session: AsyncSession, currency: str) -> int:
    scale = await session.scalar(select(Currency.scale).where(Currency.code == currency))
    if scale is None:
        raise BankflowError(ErrorCode.CURRENCY_MISMATCH, f"unknown currency {currency!r}")
    return int(scale)


def _minor(value: str, scale: int, what: str) -> int:
    try:
        return to_minor(value, scale, allow_zero=True)
    except AmountError as exc:
        raise BankflowError(ErrorCode.INVALID_AMOUNT, f"{what}: {exc}") from exc


def product_view(product: SavingsProduct, scale: int, accounts: int) -> ProductView:
    return ProductView(
        id=product.id,
        code=product.code,
        name=product.name,
        currency=product.currency,
        annual_rate=product.annual_rate,
        tiers=[
            TierView(
                min_balance=to_major(t["min_balance_minor"], scale),
                annual_rate=Decimal(t["annual_rate"]),
            )
            for t in product.tiers
        ],
        calculation=product.calculation,
        compounding=product.compounding,
        posting=product.posting,
        days_in_year=product.days_in_year,
        min_balance=to_major(product.min_balance_minor, scale),
        withholding_tax_rate=product.withholding_tax_rate,
        rounding=product.rounding,
        accounts=accounts,
        created_at=product.created_at,
    )


async def create_product(session: AsyncSession, req: ProductCreate) -> ProductView:
    """A new savings product; its code is unique (a second one is Duplicate)."""
    scale = await _scale(session, req.currency)
    tiers: list[dict[str, Any]] = sorted(
        (
            {
                "min_balance_minor": _minor(t.min_balance, scale, "tier min_balance"),
                "annual_rate": str(t.annual_rate),
            }
            for t in req.tiers
        ),
        key=lambda t: int(t["min_balance_minor"]),
    )
    product = SavingsProduct(
        code=req.code,
        name=req.name,
        currency=req.currency,
        annual_rate=req.annual_rate,
        tiers=tiers,
        calculation=req.calculation,
        compounding=req.compounding,
        posting=req.posting,
        days_in_year=req.days_in_year,
        min_balance_minor=_minor(req.min_balance, scale, "min_balance"),
        withholding_tax_rate=req.withholding_tax_rate,
        rounding=req.rounding,
    )
    try:
        async with session.begin_nested():
            session.add(product)
            await session.flush()
    except IntegrityError as exc:
        raise BankflowError(ErrorCode.DUPLICATE, f"a product {req.code!r} exists") from exc
    await session.refresh(product)
    return product_view(product, scale, 0)


async def list_products(session: AsyncSession) -> list[ProductView]:
    counts = (
        select(SavingsAccount.product_id, func.count().label("n"))
        .group_by(SavingsAccount.product_id)
        .subquery()
    )
    rows = await session.execute(
        select(SavingsProduct, Currency.scale, func.coalesce(counts.c.n, 0))
        .join(Currency, Currency.code == SavingsProduct.currency)
        .outerjoin(counts, counts.c.product_id == SavingsProduct.id)
        .order_by(SavingsProduct.code)
    )
    return [product_view(p, scale, n) for p, scale, n in rows]


async def get_product(session: AsyncSession, code: str) -> SavingsProduct:
    product = await session.scalar(select(SavingsProduct).where(SavingsProduct.code == code))
    if product is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no savings product {code!r}")
    return product


async def enroll_account(
    session: AsyncSession, product_code: str, account_number: str, opened_on: date | None = None
) -> EnrollmentView:
    """Put an open savings account on a product; enrolling it again on the same product with
    the same date is a no-op, on another product a Duplicate (an account has one product)."""
    product = await get_product(session, product_code)
    account = await get_account(session, account_number)
    if account.kind != "savings":
        raise BankflowError(ErrorCode.VALIDATION, f"{account_number} is not a savings account")
    if account.status != "open":
        raise BankflowError(ErrorCode.ACCOUNT_CLOSED, f"account {account_number} is closed")
    if account.currency != product.currency:
        raise BankflowError(
            ErrorCode.CURRENCY_MISMATCH,
            f"account {account_number} is in {account.currency}, the product in {product.currency}",
        )
    start = opened_on or account.opened_at.date()
    await session.execute(
        insert(SavingsAccount)
        .values(account_id=account.id, product_id=product.id, opened_on=start)
        .on_conflict_do_nothing(index_elements=["account_id"])
    )
    stored = await session.get(SavingsAccount, account.id)
    assert stored is not None
    if stored.product_id != product.id or stored.opened_on != start:
        raise BankflowError(
            ErrorCode.DUPLICATE, f"account {account_number} is already on another product or date"
        )
    return EnrollmentView(account=account.code, product=product.code, opened_on=stored.opened_on)


def terms_of(product: SavingsProduct, scale: int) -> Terms:
    unit = Decimal(1).scaleb(-scale)
    return Terms(
        annual_rate=Decimal(product.annual_rate),
        method=product.calculation,  # type: ignore[arg-type]
        compounding=product.compounding,  # type: ignore[arg-type]
        posting=product.posting,  # type: ignore[arg-type]
        days_in_year=product.days_in_year,
        min_balance=product.min_balance_minor * unit,
        withholding_tax_rate=Decimal(product.withholding_tax_rate),
        rounding=product.rounding,
        scale=scale,
        tiers=tuple(
            Tier(int(t["min_balance_minor"]) * unit, Decimal(t["annual_rate"]))
            for t in product.tiers
        ),
    )


DEMO_PRODUCT = ProductCreate(
    code="SAVE-STD",
    name="Standard savings",
    currency="USD",
    annual_rate=Decimal("0.035"),
    tiers=[],
    min_balance="10.00",
    withholding_tax_rate=Decimal("0.15"),
)


async def seed_demo_savings(
    session: AsyncSession, cash_id: int, accounts: list[LedgerAccount], today: date
) -> None:
    """The demo product with the demo savings accounts on it since the 1st of last month, each
    with a deposit dated that day, so `bankflow month-end run` for last month posts interest.
    Idempotent within a month (fixed journal ids)."""
    if (
        await session.scalar(
            select(SavingsProduct.id).where(SavingsProduct.code == DEMO_PRODUCT.code)
        )
        is None
    ):
        await create_product(session, DEMO_PRODUCT)
    first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    for account in accounts:
        if await session.get(SavingsAccount, account.id) is None:
            await enroll_account(session, DEMO_PRODUCT.code, account.code, first)
        await ledger_engine.post_journal(
            session,
            JournalRequest(
                journal_id=f"seed-savings-{account.code}-{first:%Y-%m}",
                kind="deposit",
                value_date=first,
                description="Demo savings history",
                postings=[
                    PostingLine(
                        debit_account_id=cash_id,
                        credit_account_id=account.id,
                        amount_minor=100000,
                        currency=account.currency,
                    )
                ],
            ),
        )


# --- synthetic load (bench/month_end.py and the month-end tests) ----------------------------

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
    journals: dict[tuple[str, date], list[tuple[int, int, int, str]]] = defaultdict(list)
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
    await session.execute(
        text(
            "UPDATE ledger_accounts a SET credits_posted_minor = u.c, debits_posted_minor = u.d "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:c AS bigint[]), CAST(:d AS bigint[])) "
            "AS u(id, c, d) WHERE a.id = u.id"
        ),
        {"ids": list(ids), "c": credits, "d": debits},
    )
    await session.execute(
        text(
            "UPDATE ledger_accounts SET debits_posted_minor = debits_posted_minor + :d, "
            "credits_posted_minor = credits_posted_minor + :c WHERE id = :id"
        ),
        {"id": cash, "d": sum(credits), "c": sum(debits)},
    )
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
