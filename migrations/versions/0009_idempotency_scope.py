"""idempotency keys scoped per (user, method, route) with renewable claims; members and member
accounts remember the key that created them; audit entries carry their own id and the members a
read showed

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 21:00:00

Idempotency records stored before this revision have no route: they are kept (route '') but no
longer match a request. A retry across the upgrade therefore runs its route again, which is safe
for every process-starting route (their workflow ids derive from the user and the key) and, from
this revision on, for member creation and account opening (the key is on the row they create).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RECORDS = "idempotency_records"


def _key_of_creator(table: str, creator: str, constraint: str) -> None:
    op.add_column(table, sa.Column(creator, sa.Integer(), nullable=True))
    op.add_column(table, sa.Column("idempotency_key", sa.String(length=200), nullable=True))
    op.create_foreign_key(
        op.f(f"fk_{table}_{creator}_staff_users"), table, "staff_users", [creator], ["id"]
    )
    op.create_unique_constraint(constraint, table, [creator, "idempotency_key"])


def upgrade() -> None:
    op.add_column(
        RECORDS, sa.Column("method", sa.String(length=10), server_default="POST", nullable=False)
    )
    op.add_column(
        RECORDS, sa.Column("route", sa.String(length=200), server_default="", nullable=False)
    )
    op.alter_column(RECORDS, "method", server_default=None)
    op.alter_column(RECORDS, "route", server_default=None)
    op.add_column(RECORDS, sa.Column("owner", sa.Uuid(), nullable=True))
    # now(): a claim left in progress by the old code is stale at once and taken over by a retry.
    op.add_column(
        RECORDS,
        sa.Column(
            "lease_expires_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.drop_constraint(op.f("pk_idempotency_records"), RECORDS, type_="primary")
    op.create_primary_key(
        op.f("pk_idempotency_records"), RECORDS, ["user_id", "method", "route", "key"]
    )

    _key_of_creator("members", "created_by_id", "uq_members_created_by_key")
    _key_of_creator("ledger_accounts", "opened_by_id", "uq_ledger_accounts_opened_by_key")

    op.add_column("audit_log", sa.Column("entry_id", sa.Uuid(), nullable=True))
    op.create_unique_constraint(op.f("uq_audit_log_entry_id"), "audit_log", ["entry_id"])
    op.add_column(
        "audit_log", sa.Column("member_numbers", sa.ARRAY(sa.String(length=20)), nullable=True)
    )
    op.create_index(
        "ix_audit_log_member_numbers", "audit_log", ["member_numbers"], postgresql_using="gin"
    )


def downgrade() -> None:
    op.drop_index("ix_audit_log_member_numbers", table_name="audit_log")
    op.drop_column("audit_log", "member_numbers")
    op.drop_constraint(op.f("uq_audit_log_entry_id"), "audit_log", type_="unique")
    op.drop_column("audit_log", "entry_id")
    for table, creator, constraint in (
        ("ledger_accounts", "opened_by_id", "uq_ledger_accounts_opened_by_key"),
        ("members", "created_by_id", "uq_members_created_by_key"),
    ):
        op.drop_constraint(constraint, table, type_="unique")
        op.drop_constraint(op.f(f"fk_{table}_{creator}_staff_users"), table, type_="foreignkey")
        op.drop_column(table, "idempotency_key")
        op.drop_column(table, creator)
    # Several routes may now share a key; only one record per (user, key) fits the old key.
    op.execute(
        "DELETE FROM idempotency_records r USING idempotency_records o "
        "WHERE r.user_id = o.user_id AND r.key = o.key AND (r.created_at, r.ctid) < (o.created_at, o.ctid)"
    )
    op.drop_constraint(op.f("pk_idempotency_records"), RECORDS, type_="primary")
    op.create_primary_key(op.f("pk_idempotency_records"), RECORDS, ["key", "user_id"])
    for column in ("lease_expires_at", "owner", "route", "method"):
        op.drop_column(RECORDS, column)
