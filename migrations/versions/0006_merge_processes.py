"""Merge the process branches (KYC, loans, reversals, month-end) back into one head.

Each process added its tables on a branch from 0001 while they were built side by side; from
here on migrations form one line again.

Revision ID: 0006
Revises: 0002, 0003, 0004, 0005
"""

from collections.abc import Sequence

revision: str = "0006"
down_revision: str | Sequence[str] | None = ("0002", "0003", "0004", "0005")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: the branches touch different tables."""


def downgrade() -> None:
    """Nothing to change."""
