"""The demo institution's products: loan products (`PERSONAL`, `EMERGENCY`) and the savings
product `SAVE-STD` with the demo savings accounts' history on it. Idempotent by code."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.ledger import engine as ledger_engine
from activities.loan_products import create_product as create_loan_product
from activities.savings import create_product, enroll_account
from activities.tables import LedgerAccount, LoanProduct, SavingsAccount, SavingsProduct
from schemas.ledger import JournalRequest, PostingLine
from schemas.loan_products import LoanProductCreate
from schemas.savings import ProductCreate

# The demo institution's products (`bankflow seed demo`): a personal loan with guarantors and
# three approval tiers, and a small emergency loan one loan officer approves.
DEMO_PRODUCTS: tuple[dict[str, Any], ...] = (
    {
        "code": "PERSONAL",
        "name": "Personal loan",
        "currency": "USD",
        "min_principal": "100.00",
        "max_principal": "50000.00",
        "min_repayments": 3,
        "max_repayments": 36,
        "annual_interest_rate": "18",
        "installment_multiple": "1",
        "disbursement_fee": {"kind": "percent", "value": "1"},
        "penalty_rate": "6",
        "accounting": "accrual",
        "guarantee": {"min_guaranteed_by_others_pct": "25", "own_savings_pct": "10"},
        "eligibility": {
            "require_kyc_verified": True,
            "min_membership_days": 0,
            "max_savings_multiple": "3",
            "no_loan_in_arrears": True,
        },
        "approval_tiers": [
            {"up_to": "1000.00", "levels": [{"role": "loan_officer"}]},
            {"up_to": "10000.00", "levels": [{"role": "loan_officer"}, {"role": "branch_manager"}]},
            {
                "up_to": None,
                "levels": [{"role": "branch_manager"}, {"role": "credit_committee", "quorum": 2}],
            },
        ],
    },
    {
        "code": "EMERGENCY",
        "name": "Emergency loan",
        "currency": "USD",
        "min_principal": "50.00",
        "max_principal": "1000.00",
        "min_repayments": 1,
        "max_repayments": 6,
        "annual_interest_rate": "12",
        "interest_method": "flat",
        "disbursement_fee": {"kind": "flat", "value": "5.00"},
        "auto_disburse": True,
        "eligibility": {"require_kyc_verified": True, "max_savings_multiple": "2"},
        "approval_tiers": [{"up_to": None, "levels": [{"role": "loan_officer"}]}],
    },
)


async def seed_products(session: AsyncSession) -> None:
    """Create the demo products that are missing (idempotent by code)."""
    for raw in DEMO_PRODUCTS:
        exists = await session.scalar(select(LoanProduct.id).where(LoanProduct.code == raw["code"]))
        if exists is None:
            await create_loan_product(session, LoanProductCreate.model_validate(raw), None)


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
