"""reversals and period close: ledger_periods, reversal_events, closed-period trigger

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-23 14:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Values fixed here (not imported) so the migration never changes after it has run.
PERIOD_CLOSED_SQLSTATE = "BFP01"
PERIOD_LOCK_CLASS = 0x0BF1

# Every journal insert takes the month's advisory lock in shared mode, a close takes it
# exclusively: a close waits for the postings of that month in flight, and a posting that starts
# after the close sees it. A retry of a journal posted before the close (same id) passes, so the
# engine can answer it with the stored journal.
PERIOD_OPEN_FUNCTION = f"""
CREATE FUNCTION bankflow_period_open() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    month date := date_trunc('month', NEW.value_date)::date;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(
        {PERIOD_LOCK_CLASS},
        (extract(year FROM month) * 12 + extract(month FROM month))::int
    );
    IF EXISTS (SELECT 1 FROM ledger_periods WHERE period_start = month)
       AND NOT EXISTS (SELECT 1 FROM journals WHERE id = NEW.id) THEN
        RAISE EXCEPTION 'period % is closed: journal % dated % refused',
            to_char(month, 'YYYY-MM'), NEW.id, NEW.value_date
            USING ERRCODE = '{PERIOD_CLOSED_SQLSTATE}';
    END IF;
    RETURN NEW;
END;
$$
"""
APPEND_ONLY = ("ledger_periods", "reversal_events")


def upgrade() -> None:
    op.create_table(
        "ledger_periods",
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column(
            "closed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("closed_by_user_id", sa.Integer(), nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "extract(day FROM period_start) = 1", name=op.f("ck_ledger_periods_first_of_month")
        ),
        sa.ForeignKeyConstraint(
            ["closed_by_user_id"],
            ["staff_users.id"],
            name=op.f("fk_ledger_periods_closed_by_user_id_staff_users"),
        ),
        sa.PrimaryKeyConstraint("period_start", name=op.f("pk_ledger_periods")),
    )
    op.create_table(
        "reversal_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("reversal_id", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("event_key", sa.String(length=100), nullable=False),
        sa.Column("journal_id", sa.String(length=200), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(
            "event IN ('requested', 'refused', 'held', 'approved', 'rejected', 'expired', "
            "'completed', 'declined')",
            name=op.f("ck_reversal_events_event_known"),
        ),
        sa.ForeignKeyConstraint(
            ["journal_id"], ["journals.id"], name=op.f("fk_reversal_events_journal_id_journals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reversal_events")),
        sa.UniqueConstraint("event_key", name=op.f("uq_reversal_events_event_key")),
    )
    op.create_index(
        op.f("ix_reversal_events_journal_id"), "reversal_events", ["journal_id"], unique=False
    )
    for table in APPEND_ONLY:  # bankflow_append_only() comes from 0001
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION bankflow_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION bankflow_append_only()"
        )
    op.execute(PERIOD_OPEN_FUNCTION)
    op.execute(
        "CREATE TRIGGER journals_period_open BEFORE INSERT ON journals "
        "FOR EACH ROW EXECUTE FUNCTION bankflow_period_open()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS journals_period_open ON journals")
    op.execute("DROP FUNCTION IF EXISTS bankflow_period_open()")
    for table in APPEND_ONLY:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.drop_index(op.f("ix_reversal_events_journal_id"), table_name="reversal_events")
    op.drop_table("reversal_events")
    op.drop_table("ledger_periods")
