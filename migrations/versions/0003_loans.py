"""loans: loan products, applications, guarantors and the loan trail

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-23 15:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "loan_products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("min_principal_minor", sa.BigInteger(), nullable=False),
        sa.Column("max_principal_minor", sa.BigInteger(), nullable=False),
        sa.Column("min_repayments", sa.SmallInteger(), nullable=False),
        sa.Column("max_repayments", sa.SmallInteger(), nullable=False),
        sa.Column("annual_interest_rate", sa.Numeric(precision=12, scale=6), nullable=False),
        sa.Column("repayment_every", sa.SmallInteger(), nullable=False),
        sa.Column("repayment_frequency", sa.String(length=8), nullable=False),
        sa.Column("interest_method", sa.String(length=24), nullable=False),
        sa.Column("amortization", sa.String(length=24), nullable=False),
        sa.Column("interest_calculation_period", sa.String(length=24), nullable=False),
        sa.Column("days_in_year", sa.String(length=8), nullable=False),
        sa.Column("days_in_month", sa.String(length=8), nullable=False),
        sa.Column("installment_multiple_minor", sa.BigInteger(), nullable=False),
        sa.Column("rounding_mode", sa.String(length=12), nullable=False),
        sa.Column("grace_on_principal", sa.SmallInteger(), nullable=False),
        sa.Column("grace_on_interest_payment", sa.SmallInteger(), nullable=False),
        sa.Column("grace_on_interest_charged", sa.SmallInteger(), nullable=False),
        sa.Column("disbursement_fee_kind", sa.String(length=8), nullable=True),
        sa.Column("disbursement_fee_flat_minor", sa.BigInteger(), nullable=False),
        sa.Column("disbursement_fee_pct", sa.Numeric(precision=9, scale=6), nullable=False),
        sa.Column("penalty_rate", sa.Numeric(precision=12, scale=6), nullable=False),
        sa.Column("guarantee_rules", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("eligibility_rules", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("approval_tiers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=12), server_default="active", nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "amortization IN ('equal_installments', 'equal_principal')",
            name=op.f("ck_loan_products_amortization"),
        ),
        sa.CheckConstraint(
            "days_in_month IN ('actual', '30')", name=op.f("ck_loan_products_days_in_month")
        ),
        sa.CheckConstraint(
            "days_in_year IN ('actual', '360', '364', '365')",
            name=op.f("ck_loan_products_days_in_year"),
        ),
        sa.CheckConstraint(
            "disbursement_fee_kind IS NULL OR disbursement_fee_kind IN ('flat', 'percent')",
            name=op.f("ck_loan_products_fee_kind"),
        ),
        sa.CheckConstraint(
            "interest_calculation_period IN ('same_as_repayment', 'daily')",
            name=op.f("ck_loan_products_period"),
        ),
        sa.CheckConstraint(
            "interest_method IN ('declining_balance', 'flat')", name=op.f("ck_loan_products_method")
        ),
        sa.CheckConstraint(
            "repayment_frequency IN ('days', 'weeks', 'months')",
            name=op.f("ck_loan_products_frequency"),
        ),
        sa.CheckConstraint(
            "status IN ('active', 'retired')", name=op.f("ck_loan_products_status_known")
        ),
        sa.CheckConstraint(
            "min_principal_minor > 0 AND min_principal_minor <= max_principal_minor",
            name=op.f("ck_loan_products_principal_range"),
        ),
        sa.CheckConstraint(
            "min_repayments > 0 AND min_repayments <= max_repayments",
            name=op.f("ck_loan_products_repayments_range"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["staff_users.id"],
            name=op.f("fk_loan_products_created_by_id_staff_users"),
        ),
        sa.ForeignKeyConstraint(
            ["currency"], ["currencies.code"], name=op.f("fk_loan_products_currency_currencies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_products")),
        sa.UniqueConstraint("code", name=op.f("uq_loan_products_code")),
    )
    op.create_table(
        "loans",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("loan_number", sa.String(length=20), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("requested_principal_minor", sa.BigInteger(), nullable=False),
        sa.Column("requested_repayments", sa.SmallInteger(), nullable=False),
        sa.Column("principal_minor", sa.BigInteger(), nullable=False),
        sa.Column("repayments", sa.SmallInteger(), nullable=False),
        sa.Column("purpose", sa.Text(), server_default="", nullable=False),
        sa.Column("expected_disbursement_on", sa.Date(), nullable=False),
        sa.Column("product_snapshot", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("state", sa.String(length=40), nullable=False),
        sa.Column("stage", sa.String(length=40), nullable=False),
        sa.Column("assigned_role", sa.String(length=32), nullable=True),
        sa.Column("current_details", sa.Text(), server_default="", nullable=False),
        sa.Column("eligibility", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("overdue_since", sa.Date(), nullable=True),
        sa.Column("entered_by_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("last_event_seq", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state IN ('submitted_and_pending_approval', 'approved', 'rejected', 'withdrawn', 'active', 'closed_obligations_met', 'overpaid', 'written_off')",
            name=op.f("ck_loans_state_known"),
        ),
        sa.CheckConstraint(
            "principal_minor > 0 AND repayments > 0", name=op.f("ck_loans_terms_positive")
        ),
        sa.ForeignKeyConstraint(
            ["currency"], ["currencies.code"], name=op.f("fk_loans_currency_currencies")
        ),
        sa.ForeignKeyConstraint(
            ["entered_by_id"], ["staff_users.id"], name=op.f("fk_loans_entered_by_id_staff_users")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_loans_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["loan_products.id"], name=op.f("fk_loans_product_id_loan_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loans")),
        sa.UniqueConstraint("entered_by_id", "idempotency_key", name="uq_loans_entered_by_key"),
        sa.UniqueConstraint("loan_number", name=op.f("uq_loans_loan_number")),
    )
    op.create_index("ix_loans_member", "loans", ["member_id"], unique=False)
    op.create_table(
        "loan_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("loan_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("from_state", sa.String(length=40), nullable=True),
        sa.Column("to_state", sa.String(length=40), nullable=True),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["loan_id"], ["loans.id"], name=op.f("fk_loan_events_loan_id_loans")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_loan_events_event_id")),
    )
    op.create_index("ix_loan_events_loan", "loan_events", ["loan_id", "seq"], unique=False)
    op.create_table(
        "loan_guarantors",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("loan_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=12), server_default="pending", nullable=False),
        sa.Column("responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recorded_by", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'accepted', 'declined')",
            name=op.f("ck_loan_guarantors_status_known"),
        ),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_loan_guarantors_amount_positive")),
        sa.ForeignKeyConstraint(
            ["loan_id"], ["loans.id"], name=op.f("fk_loan_guarantors_loan_id_loans")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_loan_guarantors_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_guarantors")),
        sa.UniqueConstraint("loan_id", "member_id", name="uq_loan_guarantors_loan_member"),
    )
    op.create_index("ix_loan_guarantors_member", "loan_guarantors", ["member_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_loan_guarantors_member", table_name="loan_guarantors")
    op.drop_table("loan_guarantors")
    op.drop_index("ix_loan_events_loan", table_name="loan_events")
    op.drop_table("loan_events")
    op.drop_index("ix_loans_member", table_name="loans")
    op.drop_table("loans")
    op.drop_table("loan_products")
