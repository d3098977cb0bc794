"""Savings products: define them (finance), list them, and put savings accounts on them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from activities.db import in_transaction
from activities.savings import create_product, enroll_account, list_products
from api.deps import ANY_STAFF, Principal, Session, SessionsDep, require_roles
from api.errors import errors
from schemas import types
from schemas.savings import (
    ENROLLING_ROLES,
    PRODUCT_ADMIN_ROLES,
    EnrollmentView,
    EnrollRequest,
    ProductCreate,
    ProductView,
)

router = APIRouter(prefix="/v1/savings-products", tags=["savings"])

ProductAdmin = Annotated[Principal, Depends(require_roles(*PRODUCT_ADMIN_ROLES))]
Enroller = Annotated[Principal, Depends(require_roles(*ENROLLING_ROLES))]
Reader = Annotated[Principal, Depends(require_roles(*ANY_STAFF))]
ProductCode = Annotated[types.ProductCode, Path(description="e.g. SAVE-STD")]


@router.post(
    "",
    status_code=201,
    responses=errors(
        s409="Duplicate: the code is taken",
        s422="InvalidAmount, CurrencyMismatch or ValidationError",
    ),
)
async def create_savings_product(
    _: ProductAdmin, body: ProductCreate, sessions: SessionsDep
) -> ProductView:
    """Define a savings product: rate (optionally tiered by balance), daily or average daily
    balance, daily or monthly compounding, monthly/quarterly/annual posting, 360 or 365 days,
    minimum balance, withholding tax and rounding mode. Finance only; a code is used once (409)."""

    async def work(session: Session) -> ProductView:
        return await create_product(session, body)

    return await in_transaction(sessions, work)


@router.get("")
async def list_savings_products(_: Reader, sessions: SessionsDep) -> list[ProductView]:
    """Every savings product with the number of accounts on it. Any staff role."""
    async with sessions() as session:
        return await list_products(session)


@router.post(
    "/{code}/accounts",
    status_code=201,
    responses=errors(s409="Duplicate: the account is on a product already"),
)
async def enroll_savings_account(
    _: Enroller, code: ProductCode, body: EnrollRequest, sessions: SessionsDep
) -> EnrollmentView:
    """Put an open savings account on this product; it earns interest from `opened_on`
    (default: the day it opened). Tellers and branch managers; an account has one product."""

    async def work(session: Session) -> EnrollmentView:
        return await enroll_account(session, code, body.account, body.opened_on)

    return await in_transaction(sessions, work)
