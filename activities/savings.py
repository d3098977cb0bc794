"""Savings products and enrolment: create and list products, put savings accounts on them, and
turn a product row into the interest calculator's terms. Each function runs inside the caller's
transaction."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from activities.accounts import get_account
from activities.tables import Currency, SavingsAccount, SavingsProduct
from domain.interest import Terms, Tier
from domain.money import AmountError, to_major, to_minor
from schemas.errors import BankflowError, ErrorCode
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
