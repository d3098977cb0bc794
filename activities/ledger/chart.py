"""Institution set-up: currencies and the default chart of accounts, idempotent by code.

An institution extends the chart by adding GL accounts with their own codes; set-up never touches
an account that already exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from activities.tables import Branch, Currency, LedgerAccount

# ISO 4217 minor-unit exponents for the currencies the demo and tests use.
ISO_CURRENCIES: dict[str, tuple[str, int]] = {
    "USD": ("US Dollar", 2),
    "EUR": ("Euro", 2),
    "GBP": ("Pound Sterling", 2),
    "KES": ("Kenyan Shilling", 2),
    "UGX": ("Uganda Shilling", 0),
    "NGN": ("Naira", 2),
    "BDT": ("Taka", 2),
    "INR": ("Indian Rupee", 2),
    "PHP": ("Philippine Peso", 2),
    "JPY": ("Yen", 0),
    "BHD": ("Bahraini Dinar", 3),
}


@dataclass(frozen=True)
class GlAccount:
    number: str
    name: str
    gl_type: str


CASH = GlAccount("1000", "Cash and vault", "asset")
SETTLEMENT_BANK = GlAccount("1010", "Settlement bank account", "asset")
LOAN_PORTFOLIO = GlAccount("1100", "Loan portfolio", "asset")
INTEREST_RECEIVABLE = GlAccount("1200", "Interest receivable", "asset")
PENALTIES_RECEIVABLE = GlAccount("1220", "Penalties receivable", "asset")
MEMBER_OVERDRAFTS = GlAccount("1250", "Member overdrafts receivable", "asset")
PAYMENT_CLEARING = GlAccount("1300", "Payment clearing", "asset")
MEMBER_SAVINGS = GlAccount("2000", "Member savings control", "liability")
WITHHOLDING_TAX = GlAccount("2200", "Withholding tax payable", "liability")
SUSPENSE = GlAccount("2900", "Suspense", "liability")
EQUITY = GlAccount("3000", "Equity and retained earnings", "equity")
MEMBER_SHARES = GlAccount("3100", "Member shares", "equity")
INTEREST_INCOME = GlAccount("4000", "Interest income", "income")
FEE_INCOME = GlAccount("4100", "Fee income", "income")
PENALTY_INCOME = GlAccount("4200", "Penalty income", "income")
INTEREST_EXPENSE = GlAccount("5000", "Interest expense", "expense")

DEFAULT_CHART = (
    CASH,
    SETTLEMENT_BANK,
    LOAN_PORTFOLIO,
    INTEREST_RECEIVABLE,
    PENALTIES_RECEIVABLE,
    MEMBER_OVERDRAFTS,
    PAYMENT_CLEARING,
    MEMBER_SAVINGS,
    WITHHOLDING_TAX,
    SUSPENSE,
    EQUITY,
    MEMBER_SHARES,
    INTEREST_INCOME,
    FEE_INCOME,
    PENALTY_INCOME,
    INTEREST_EXPENSE,
)

# Which GL account each kind of member account rolls up into in the trial balance.
CONTROL_ACCOUNT = {"savings": MEMBER_SAVINGS, "shares": MEMBER_SHARES, "loan": LOAN_PORTFOLIO}


def gl_code(gl: GlAccount, currency: str) -> str:
    return f"{gl.number}-{currency}"


async def ensure_currency(session: AsyncSession, code: str, scale: int | None = None) -> None:
    name, iso_scale = ISO_CURRENCIES.get(code, (code, 2))
    await session.execute(
        insert(Currency)
        .values(code=code, name=name, scale=iso_scale if scale is None else scale)
        .on_conflict_do_nothing(index_elements=["code"])
    )


async def ensure_chart(session: AsyncSession, currency: str) -> dict[str, int]:
    """Create the default chart for a currency; returns GL number -> ledger account id."""
    await ensure_currency(session, currency)
    await session.execute(
        insert(LedgerAccount)
        .values(
            [
                {
                    "code": gl_code(gl, currency),
                    "name": f"{gl.name} ({currency})",
                    "kind": "gl",
                    "gl_type": gl.gl_type,
                    "currency": currency,
                }
                for gl in DEFAULT_CHART
            ]
        )
        .on_conflict_do_nothing(index_elements=["code"])
    )
    rows = await session.execute(
        select(LedgerAccount.code, LedgerAccount.id).where(
            LedgerAccount.code.in_([gl_code(gl, currency) for gl in DEFAULT_CHART])
        )
    )
    return {code.split("-")[0]: account_id for code, account_id in rows}


async def ensure_branch(session: AsyncSession, code: str, name: str, timezone: str) -> int:
    await session.execute(
        insert(Branch)
        .values(code=code, name=name, timezone=timezone)
        .on_conflict_do_nothing(index_elements=["code"])
    )
    branch_id = await session.scalar(select(Branch.id).where(Branch.code == code))
    assert branch_id is not None
    return branch_id
