"""Loan products: create, read, snapshot for an application, and schedule previews.

Each function runs inside the caller's transaction. A product is refused unless its own smallest
and largest loans make a schedule, so a product that cannot price a loan never goes live.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from activities.tables import Currency, LoanProduct
from domain.money import AmountError, to_major, to_minor
from domain.schedule import Schedule, ScheduleError, ScheduleTerms, generate_schedule
from schemas.errors import BankflowError, ErrorCode
from schemas.loan_products import (
    ApprovalTier,
    ApprovalTierView,
    DisbursementFee,
    EligibilityRules,
    GuaranteeRules,
    LoanProductCreate,
    LoanProductView,
    ProductSnapshot,
    ScheduleRules,
    plain,
    schedule_terms,
)
from schemas.types import Percent

SCHEDULE_FIELDS = tuple(ScheduleRules.model_fields)
PERCENT: TypeAdapter[Decimal] = TypeAdapter(Percent)


def minor(amount: str, scale: int, field: str, *, allow_zero: bool = False) -> int:
    """A major-unit string as minor units, or InvalidAmount naming the field."""
    try:
        return to_minor(amount, scale, allow_zero=allow_zero)
    except AmountError as exc:
        raise BankflowError(ErrorCode.INVALID_AMOUNT, f"{field}: {exc}") from exc


def build_schedule(terms: ScheduleTerms) -> Schedule:
    try:
        return generate_schedule(terms)
    except ScheduleError as exc:
        raise BankflowError(ErrorCode.INVALID_SCHEDULE, str(exc)) from exc


def _tiers(body: LoanProductCreate, scale: int, max_principal_minor: int) -> list[ApprovalTier]:
    tiers: list[ApprovalTier] = []
    previous = 0
    for index, tier in enumerate(body.approval_tiers):
        bound = None if tier.up_to is None else minor(tier.up_to, scale, f"approval_tiers.{index}")
        if bound is not None and bound <= previous:
            raise BankflowError(ErrorCode.VALIDATION, "approval tiers must ascend by up_to")
        if bound is None and index != len(body.approval_tiers) - 1:
            raise BankflowError(ErrorCode.VALIDATION, "only the last approval tier may be open")
        tiers.append(ApprovalTier(up_to_minor=bound, levels=tier.levels))
        previous = bound or previous
    last = tiers[-1].up_to_minor
    if last is not None and last < max_principal_minor:
        raise BankflowError(
            ErrorCode.VALIDATION, "the approval tiers must cover loans up to max_principal"
        )
    return tiers


def _row(body: LoanProductCreate, scale: int, created_by_id: int | None) -> dict[str, Any]:
    lo = minor(body.min_principal, scale, "min_principal")
    hi = minor(body.max_principal, scale, "max_principal")
    if lo > hi:
        raise BankflowError(ErrorCode.VALIDATION, "min_principal is above max_principal")
    fee = body.disbursement_fee
    row: dict[str, Any] = {name: getattr(body, name) for name in SCHEDULE_FIELDS}
    row.update(
        code=body.code,
        name=body.name,
        currency=body.currency,
        min_principal_minor=lo,
        max_principal_minor=hi,
        min_repayments=body.min_repayments,
        max_repayments=body.max_repayments,
        installment_multiple_minor=minor(
            body.installment_multiple, scale, "installment_multiple", allow_zero=True
        ),
        disbursement_fee_kind=fee.kind if fee else None,
        disbursement_fee_flat_minor=minor(fee.value, scale, "disbursement_fee.value")
        if fee and fee.kind == "flat"
        else 0,
        disbursement_fee_pct=_percent(fee.value) if fee and fee.kind == "percent" else Decimal(0),
        penalty_rate=body.penalty_rate,
        accounting=body.accounting,
        auto_disburse=body.auto_disburse,
        guarantee_rules=body.guarantee.model_dump(mode="json"),
        eligibility_rules=body.eligibility.model_dump(mode="json"),
        approval_tiers=[t.model_dump(mode="json") for t in _tiers(body, scale, hi)],
        created_by_id=created_by_id,
    )
    del row["installment_multiple"]
    return row


def _percent(value: str) -> Decimal:
    """A percentage fee as its column keeps it (6 decimals): refused, never rounded, beyond."""
    try:
        return PERCENT.validate_python(value)
    except ValidationError as exc:
        raise BankflowError(
            ErrorCode.VALIDATION,
            f"disbursement_fee.value: a percentage from 0 to 100 with at most 6 decimals, not "
            f"{value!r}",
        ) from exc


async def currency_scale(session: AsyncSession, currency: str) -> int:
    scale = await session.scalar(select(Currency.scale).where(Currency.code == currency))
    if scale is None:
        raise BankflowError(ErrorCode.CURRENCY_MISMATCH, f"unknown currency {currency!r}")
    return int(scale)


async def create_product(
    session: AsyncSession, body: LoanProductCreate, created_by_id: int | None
) -> LoanProduct:
    """Insert a product; a taken code is Duplicate, terms that make no schedule InvalidSchedule."""
    scale = await currency_scale(session, body.currency)
    row = _row(body, scale, created_by_id)
    product = LoanProduct(**row)
    snap = snapshot(product, scale)
    for principal, count in (
        (snap.min_principal_minor, snap.min_repayments),
        (snap.max_principal_minor, snap.max_repayments),
    ):
        build_schedule(
            schedule_terms(
                snap,
                principal_minor=principal,
                repayments=count,
                scale=scale,
                disbursed_on=date(2024, 1, 31),
            )
        )
    inserted = await session.scalar(
        insert(LoanProduct)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["code"])
        .returning(LoanProduct.id)
    )
    if inserted is None:
        raise BankflowError(ErrorCode.DUPLICATE, f"a loan product {body.code!r} exists")
    created = await session.get(LoanProduct, inserted)
    assert created is not None
    return created


async def get_product(session: AsyncSession, code: str) -> LoanProduct:
    product = await session.scalar(select(LoanProduct).where(LoanProduct.code == code))
    if product is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no loan product {code!r}")
    return product


async def list_products(session: AsyncSession) -> list[LoanProduct]:
    return list(await session.scalars(select(LoanProduct).order_by(LoanProduct.code)))


def snapshot(product: LoanProduct, scale: int) -> ProductSnapshot:
    """The product as an application carries it: every rule, amounts in minor units."""
    rules: dict[str, Any] = {
        name: getattr(product, name) for name in SCHEDULE_FIELDS if name != "installment_multiple"
    }
    rules["annual_interest_rate"] = plain(product.annual_interest_rate)
    return ProductSnapshot(
        **rules,
        installment_multiple=to_major(product.installment_multiple_minor, scale),
        code=product.code,
        name=product.name,
        currency=product.currency,
        scale=scale,
        min_principal_minor=product.min_principal_minor,
        max_principal_minor=product.max_principal_minor,
        min_repayments=product.min_repayments,
        max_repayments=product.max_repayments,
        disbursement_fee_kind=product.disbursement_fee_kind,
        disbursement_fee_flat_minor=product.disbursement_fee_flat_minor,
        disbursement_fee_pct=plain(product.disbursement_fee_pct),
        penalty_rate=plain(product.penalty_rate),
        accounting=product.accounting,
        auto_disburse=product.auto_disburse,
        guarantee=GuaranteeRules.model_validate(product.guarantee_rules),
        eligibility=EligibilityRules.model_validate(product.eligibility_rules),
        approval_tiers=[ApprovalTier.model_validate(t) for t in product.approval_tiers],
    )


def product_view(product: LoanProduct, scale: int) -> LoanProductView:
    snap = snapshot(product, scale)
    fee = None
    if snap.disbursement_fee_kind == "flat":
        fee = DisbursementFee(kind="flat", value=to_major(snap.disbursement_fee_flat_minor, scale))
    elif snap.disbursement_fee_kind == "percent":
        fee = DisbursementFee(kind="percent", value=str(snap.disbursement_fee_pct))
    return LoanProductView(
        **snap.model_dump(include=set(SCHEDULE_FIELDS)),
        code=snap.code,
        name=snap.name,
        currency=snap.currency,
        min_principal=to_major(snap.min_principal_minor, scale),
        max_principal=to_major(snap.max_principal_minor, scale),
        min_repayments=snap.min_repayments,
        max_repayments=snap.max_repayments,
        disbursement_fee=fee,
        penalty_rate=snap.penalty_rate,
        accounting=snap.accounting,
        auto_disburse=snap.auto_disburse,
        guarantee=snap.guarantee,
        eligibility=snap.eligibility,
        approval_tiers=[
            ApprovalTierView(
                up_to=None if t.up_to_minor is None else to_major(t.up_to_minor, scale),
                levels=t.levels,
            )
            for t in snap.approval_tiers
        ],
        status=product.status,
    )


def check_terms(snap: ProductSnapshot, principal_minor: int, repayments: int) -> None:
    """The product's bounds on principal and number of repayments (ValidationError outside)."""
    s = snap.scale
    if not snap.min_principal_minor <= principal_minor <= snap.max_principal_minor:
        raise BankflowError(
            ErrorCode.VALIDATION,
            f"{snap.code} lends {to_major(snap.min_principal_minor, s)} to "
            f"{to_major(snap.max_principal_minor, s)} {snap.currency}",
        )
    if not snap.min_repayments <= repayments <= snap.max_repayments:
        raise BankflowError(
            ErrorCode.VALIDATION,
            f"{snap.code} takes {snap.min_repayments} to {snap.max_repayments} repayments",
        )
