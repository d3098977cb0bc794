"""Failed logins per username (migration 0008): the lockout that holds across API processes.

Keyed by the username as typed (casefolded), not by user id, so an unknown username locks just as
a real one does and a lockout tells an attacker nothing about which usernames exist.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from activities.models import Base


class LoginThrottle(Base):
    __tablename__ = "login_throttle"
    __table_args__ = (CheckConstraint("failures >= 0", name="failures_not_negative"),)
    username_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, doc="consecutive failed logins since a success")
    locked_until: Mapped[datetime | None] = mapped_column(doc="no attempt is checked before")
    last_failure_at: Mapped[datetime] = mapped_column(server_default=func.now())
