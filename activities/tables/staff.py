"""Staff: users, their roles, and failed logins per username (migration 0008), the lockout that
holds across API processes.

The login throttle is keyed by the username as typed (casefolded), not by user id, so an unknown username locks just as
a real one does and a lockout tells an attacker nothing about which usernames exist.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from activities.tables.base import Base, _in

ROLES = (
    "teller",
    "loan_officer",
    "branch_manager",
    "credit_committee",
    "kyc_reviewer",
    "compliance_officer",
    "finance",
    "ops",
    "admin",
)


class StaffUser(Base):
    __tablename__ = "staff_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(Text, doc="argon2id hash; never the password")
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branches.id"))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class StaffRole(Base):
    __tablename__ = "staff_roles"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role_known"),)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(32), primary_key=True)


class LoginThrottle(Base):
    __tablename__ = "login_throttle"
    __table_args__ = (CheckConstraint("failures >= 0", name="failures_not_negative"),)
    username_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, doc="consecutive failed logins since a success")
    locked_until: Mapped[datetime | None] = mapped_column(doc="no attempt is checked before")
    last_failure_at: Mapped[datetime] = mapped_column(server_default=func.now())
