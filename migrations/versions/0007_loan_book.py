"""loan book: disbursements, installments, loan transactions, PAR snapshots; product accounting
and auto-disbursement; the servicing columns of loans

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 17:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")


def _minor(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.BigInteger(), server_default="0", nullable=False)


def upgrade() -> None:
    op.add_column(
        "loan_products",
        sa.Column("auto_disburse", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "loan_products",
        sa.Column("accounting", sa.String(length=8), server_default="cash", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_loan_products_accounting_known"),
        "loan_products",
        "accounting IN ('cash', 'accrual')",
    )
    op.add_column("loans", sa.Column("ledger_account_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_loans_ledger_account_id_ledger_accounts"),
        "loans",
        "ledger_accounts",
        ["ledger_account_id"],
        ["id"],
    )
    op.add_column("loans", sa.Column("disbursed_on", sa.Date(), nullable=True))
    op.add_column("loans", sa.Column("closed_on", sa.Date(), nullable=True))
    op.add_column(
        "loans", sa.Column("days_past_due", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "loans",
        sa.Column("arrears_bucket", sa.String(length=16), server_default="current", nullable=False),
    )
    op.add_column("loans", sa.Column("serviced_through", sa.Date(), nullable=True))
    op.add_column(
        "loans",
        sa.Column("penalty_exact", sa.Numeric(30, 12), server_default="0", nullable=False),
    )
    for name in (
        "interest_recognized_minor",
        "interest_receivable_minor",
        "penalty_receivable_minor",
        "overpaid_minor",
    ):
        op.add_column("loans", _minor(name))
    op.create_index(
        "ix_loans_active",
        "loans",
        ["id"],
        postgresql_where=sa.text("state = 'active'"),
    )

    op.create_table(
        "disbursements",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("loan_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.SmallInteger(), nullable=False),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("destination", sa.String(length=16), nullable=False),
        sa.Column("savings_account_id", sa.BigInteger(), nullable=True),
        sa.Column("external_account", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        _minor("fee_minor"),
        sa.Column("disbursed_on", sa.Date(), nullable=False),
        sa.Column("journal_id", sa.String(length=200), nullable=True),
        sa.Column("payout_reference", sa.String(length=200), nullable=True),
        sa.Column("failure_reason", sa.Text(), server_default="", nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "status IN ('in_progress', 'completed', 'compensated', 'reversed')",
            name=op.f("ck_disbursements_status_known"),
        ),
        sa.CheckConstraint(
            "destination IN ('savings', 'external')",
            name=op.f("ck_disbursements_destination_known"),
        ),
        sa.CheckConstraint(
            "amount_minor > 0 AND fee_minor >= 0", name=op.f("ck_disbursements_amounts")
        ),
        sa.ForeignKeyConstraint(["loan_id"], ["loans.id"]),
        sa.ForeignKeyConstraint(["savings_account_id"], ["ledger_accounts.id"]),
        sa.ForeignKeyConstraint(["journal_id"], ["journals.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disbursements")),
        sa.UniqueConstraint("loan_id", "attempt", name="uq_disbursements_loan_attempt"),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_disbursements_workflow_id")),
    )
    op.create_index(
        "uq_disbursements_loan_holding",
        "disbursements",
        ["loan_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('in_progress', 'completed')"),
    )

    op.create_table(
        "loan_installments",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("loan_id", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.SmallInteger(), nullable=False),
        sa.Column("from_on", sa.Date(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("principal_minor", sa.BigInteger(), nullable=False),
        sa.Column("interest_minor", sa.BigInteger(), nullable=False),
        _minor("fee_minor"),
        _minor("penalty_minor"),
        _minor("principal_paid_minor"),
        _minor("interest_paid_minor"),
        _minor("fee_paid_minor"),
        _minor("penalty_paid_minor"),
        _minor("interest_waived_minor"),
        sa.Column("completed_on", sa.Date(), nullable=True),
        sa.CheckConstraint(
            "principal_minor >= 0 AND interest_minor >= 0 AND fee_minor >= 0 "
            "AND penalty_minor >= 0",
            name=op.f("ck_loan_installments_charges_nonnegative"),
        ),
        sa.CheckConstraint(
            "principal_paid_minor BETWEEN 0 AND principal_minor "
            "AND fee_paid_minor BETWEEN 0 AND fee_minor "
            "AND penalty_paid_minor BETWEEN 0 AND penalty_minor "
            "AND interest_paid_minor >= 0 AND interest_waived_minor >= 0 "
            "AND interest_paid_minor + interest_waived_minor <= interest_minor",
            name=op.f("ck_loan_installments_paid_within_charge"),
        ),
        sa.ForeignKeyConstraint(["loan_id"], ["loans.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_installments")),
        sa.UniqueConstraint("loan_id", "number", name="uq_loan_installments_loan_number"),
    )
    op.create_index(
        "ix_loan_installments_due_open",
        "loan_installments",
        ["due_on"],
        postgresql_where=sa.text("completed_on IS NULL"),
    )

    op.create_table(
        "loan_transactions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("loan_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value_date", sa.Date(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        _minor("principal_minor"),
        _minor("interest_minor"),
        _minor("fee_minor"),
        _minor("penalty_minor"),
        _minor("overpayment_minor"),
        sa.Column("source", sa.String(length=16), nullable=True),
        sa.Column("journal_id", sa.String(length=200), nullable=False),
        sa.Column("reversed_by_journal_id", sa.String(length=200), nullable=True),
        sa.Column("workflow_id", sa.String(length=200), nullable=True),
        sa.Column(
            "allocation",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "kind IN ('disbursement', 'repayment', 'penalty', 'accrual')",
            name=op.f("ck_loan_transactions_kind_known"),
        ),
        sa.CheckConstraint(
            "amount_minor >= 0 AND principal_minor >= 0 AND interest_minor >= 0 "
            "AND fee_minor >= 0 AND penalty_minor >= 0 AND overpayment_minor >= 0",
            name=op.f("ck_loan_transactions_amounts_nonnegative"),
        ),
        sa.ForeignKeyConstraint(["loan_id"], ["loans.id"]),
        sa.ForeignKeyConstraint(["journal_id"], ["journals.id"]),
        sa.ForeignKeyConstraint(["reversed_by_journal_id"], ["journals.id"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_transactions")),
    )
    op.create_index(
        "ix_loan_transactions_loan", "loan_transactions", ["loan_id", "value_date", "id"]
    )
    op.create_index(
        "uq_loan_transactions_daily",
        "loan_transactions",
        ["loan_id", "kind", "value_date"],
        unique=True,
        postgresql_where=sa.text("kind IN ('penalty', 'accrual')"),
    )

    op.create_table(
        "par_snapshots",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("bucket", sa.String(length=16), nullable=False),
        sa.Column("loans", sa.Integer(), nullable=False),
        sa.Column("outstanding_principal_minor", sa.BigInteger(), nullable=False),
        sa.Column("overdue_minor", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(["currency"], ["currencies.code"]),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_par_snapshots")),
        sa.UniqueConstraint("business_date", "currency", "bucket", name="uq_par_snapshots_day"),
    )


def downgrade() -> None:
    op.drop_table("par_snapshots")
    op.drop_table("loan_transactions")
    op.drop_table("loan_installments")
    op.drop_table("disbursements")
    op.drop_index("ix_loans_active", table_name="loans")
    op.drop_constraint(op.f("fk_loans_ledger_account_id_ledger_accounts"), "loans")
    for name in (
        "overpaid_minor",
        "penalty_receivable_minor",
        "interest_receivable_minor",
        "interest_recognized_minor",
        "penalty_exact",
        "serviced_through",
        "arrears_bucket",
        "days_past_due",
        "closed_on",
        "disbursed_on",
        "ledger_account_id",
    ):
        op.drop_column("loans", name)
    op.drop_constraint("ck_loan_products_accounting_known", "loan_products")
    op.drop_column("loan_products", "accounting")
    op.drop_column("loan_products", "auto_disburse")
