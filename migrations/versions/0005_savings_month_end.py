"""savings products, savings accounts, interest postings, month-end runs

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-24 10:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "savings_products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("annual_rate", sa.Numeric(12, 9), nullable=False),
        sa.Column(
            "tiers",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("calculation", sa.String(length=32), nullable=False),
        sa.Column("compounding", sa.String(length=16), nullable=False),
        sa.Column("posting", sa.String(length=16), nullable=False),
        sa.Column("days_in_year", sa.SmallInteger(), nullable=False),
        sa.Column("min_balance_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("withholding_tax_rate", sa.Numeric(12, 9), nullable=False),
        sa.Column("rounding", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "calculation IN ('daily_balance', 'average_daily_balance')",
            name=op.f("ck_savings_products_calculation_known"),
        ),
        sa.CheckConstraint(
            "compounding IN ('daily', 'monthly')",
            name=op.f("ck_savings_products_compounding_known"),
        ),
        sa.CheckConstraint(
            "posting IN ('monthly', 'quarterly', 'annually')",
            name=op.f("ck_savings_products_posting_known"),
        ),
        sa.CheckConstraint(
            "days_in_year IN (360, 365)", name=op.f("ck_savings_products_days_in_year_known")
        ),
        sa.CheckConstraint(
            "annual_rate >= 0 AND withholding_tax_rate >= 0",
            name=op.f("ck_savings_products_rates_nonnegative"),
        ),
        sa.CheckConstraint(
            "min_balance_minor >= 0", name=op.f("ck_savings_products_min_balance_nonnegative")
        ),
        sa.ForeignKeyConstraint(
            ["currency"],
            ["currencies.code"],
            name=op.f("fk_savings_products_currency_currencies"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_savings_products")),
        sa.UniqueConstraint("code", name=op.f("uq_savings_products_code")),
    )
    op.create_table(
        "savings_accounts",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("opened_on", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_savings_accounts_account_id_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["savings_products.id"],
            name=op.f("fk_savings_accounts_product_id_savings_products"),
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_savings_accounts")),
    )
    op.create_index("ix_savings_accounts_product", "savings_accounts", ["product_id"])
    op.create_table(
        "interest_postings",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("journal_id", sa.String(length=200), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("earned", sa.Numeric(30, 9), nullable=False),
        sa.Column("posted_minor", sa.BigInteger(), nullable=False),
        sa.Column("tax_minor", sa.BigInteger(), nullable=False),
        sa.Column("accrued", sa.Numeric(30, 9), nullable=False),
        sa.Column("residue", sa.Numeric(30, 9), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'",
            name=op.f("ck_interest_postings_period_format"),
        ),
        sa.CheckConstraint(
            "posted_minor >= 0 AND tax_minor >= 0",
            name=op.f("ck_interest_postings_amounts_nonnegative"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_interest_postings_account_id_ledger_accounts"),
        ),
        sa.PrimaryKeyConstraint("account_id", "period", name=op.f("pk_interest_postings")),
    )
    op.create_index("ix_interest_postings_period", "interest_postings", ["period"])
    op.create_table(
        "month_end_runs",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("accounts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "totals",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Numeric(12, 3), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'completed')", name=op.f("ck_month_end_runs_status_known")
        ),
        sa.PrimaryKeyConstraint("period", name=op.f("pk_month_end_runs")),
    )


def downgrade() -> None:
    op.drop_table("month_end_runs")
    op.drop_index("ix_interest_postings_period", table_name="interest_postings")
    op.drop_table("interest_postings")
    op.drop_index("ix_savings_accounts_product", table_name="savings_accounts")
    op.drop_table("savings_accounts")
    op.drop_table("savings_products")
