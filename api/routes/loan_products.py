"""Loan products: configure (admin), list and read (any staff), and preview a schedule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from activities.db import in_transaction
from activities.loan_products import (
    build_schedule,
    check_terms,
    create_product,
    currency_scale,
    get_product,
    list_products,
    minor,
    product_view,
    snapshot,
)
from api.deps import ANY_STAFF, Principal, Session, SessionsDep, require_roles
from api.errors import errors
from schemas import types
from schemas.loan_products import (
    LoanProductCreate,
    LoanProductView,
    SchedulePreviewRequest,
    schedule_terms,
)
from schemas.schedule import ScheduleView

router = APIRouter(prefix="/v1/loan-products", tags=["loan products"])

Admin = Annotated[Principal, Depends(require_roles("admin"))]
Staff = Annotated[Principal, Depends(require_roles(*ANY_STAFF))]
ProductCode = Annotated[types.ProductCode, Path(description="e.g. PERSONAL")]


@router.post(
    "",
    status_code=201,
    responses=errors(
        s409="Duplicate: the code is taken",
        s422="InvalidAmount, InvalidSchedule, CurrencyMismatch or ValidationError",
    ),
)
async def create_loan_product(
    principal: Admin, body: LoanProductCreate, sessions: SessionsDep, response: Response
) -> LoanProductView:
    """Configure a loan product (admins). A taken code is 409 `Duplicate`; bounds, tiers or
    terms that cannot price the product's smallest and largest loan are 422."""

    async def work(session: Session) -> LoanProductView:
        product = await create_product(session, body, principal.id)
        return product_view(product, await currency_scale(session, product.currency))

    view = await in_transaction(sessions, work)
    response.headers["Location"] = f"/v1/loan-products/{view.code}"
    return view


@router.get("")
async def list_loan_products(_: Staff, sessions: SessionsDep) -> list[LoanProductView]:
    """Every loan product, by code."""
    async with sessions() as session:
        return [
            product_view(p, await currency_scale(session, p.currency))
            for p in await list_products(session)
        ]


@router.get("/{code}")
async def get_loan_product(_: Staff, code: ProductCode, sessions: SessionsDep) -> LoanProductView:
    """One loan product with its rules and approval tiers."""
    async with sessions() as session:
        product = await get_product(session, code)
        return product_view(product, await currency_scale(session, product.currency))


@router.post(
    "/{code}/schedule-preview",
    responses=errors(
        s422="InvalidAmount, InvalidSchedule (terms outside the product) or ValidationError"
    ),
)
async def preview_product_schedule(
    _: Staff, code: ProductCode, body: SchedulePreviewRequest, sessions: SessionsDep
) -> ScheduleView:
    """The repayment schedule a loan of `principal` in `repayments` installments would have
    under this product's terms. Outside the product's bounds is 422; nothing is stored."""
    async with sessions() as session:
        product = await get_product(session, code)
        scale = await currency_scale(session, product.currency)
    snap = snapshot(product, scale)
    principal_minor = minor(body.principal, scale, "principal")
    check_terms(snap, principal_minor, body.repayments)
    schedule = build_schedule(
        schedule_terms(
            snap,
            principal_minor=principal_minor,
            repayments=body.repayments,
            scale=scale,
            disbursed_on=body.disbursed_on or datetime.now(UTC).date(),
            first_repayment_on=body.first_repayment_on,
        )
    )
    return ScheduleView.of(schedule, snap.currency)
