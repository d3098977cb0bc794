"""A loan's product snapshot in its own append-only table, `loan_terms`, out of `loans`.

The snapshot (the rules a loan runs under, fixed at submission) was 1.65 KB of a 1.9 KB loan row
(four rows a page), and the daily job rewrites every active loan's row each day: with the
snapshot inline, each update wrote the whole 1.9 KB again, about 6.5 KB of WAL a loan with the
page images (a million loans: 6.5 GB a day). `loans` keeps the columns that change; the terms are
written once, and, like the ledger, the database refuses to update or delete them.

Rows already in `loans` keep the dropped column's bytes until they are next rewritten (the next
daily run); `VACUUM FULL loans` in a maintenance window reclaims them at once.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 15:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "loan_terms",
        sa.Column("loan_id", sa.BigInteger(), nullable=False),
        sa.Column("product_snapshot", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(
            ["loan_id"], ["loans.id"], name=op.f("fk_loan_terms_loan_id_loans")
        ),
        sa.PrimaryKeyConstraint("loan_id", name=op.f("pk_loan_terms")),
    )
    op.execute(
        "INSERT INTO loan_terms (loan_id, product_snapshot) SELECT id, product_snapshot FROM loans"
    )
    op.drop_column("loans", "product_snapshot")
    op.execute(
        "CREATE TRIGGER loan_terms_append_only BEFORE UPDATE OR DELETE ON loan_terms "
        "FOR EACH ROW EXECUTE FUNCTION bankflow_append_only()"
    )
    op.execute(
        "CREATE TRIGGER loan_terms_no_truncate BEFORE TRUNCATE ON loan_terms "
        "FOR EACH STATEMENT EXECUTE FUNCTION bankflow_append_only()"
    )


def downgrade() -> None:
    op.add_column("loans", sa.Column("product_snapshot", postgresql.JSONB(astext_type=sa.Text())))
    op.execute(
        "UPDATE loans l SET product_snapshot = t.product_snapshot FROM loan_terms t "
        "WHERE t.loan_id = l.id"
    )
    op.alter_column("loans", "product_snapshot", nullable=False)
    op.drop_table("loan_terms")
