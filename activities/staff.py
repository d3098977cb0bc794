"""Staff users: creation with an argon2id password hash, password login with a lockout, and the
principal of each authenticated request.

All run inside the caller's transaction. Hashing and verifying are deliberately slow (that is the
point of argon2), so they run in a worker thread and never stall the event loop.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from activities.direct import DirectPool
from activities.tables import ROLES, Branch, LoginThrottle, StaffRole, StaffUser
from schemas.errors import BankflowError, ErrorCode

_hasher = PasswordHasher()
# Verified against when the username is unknown, so a missing user costs as much time as a wrong
# password and response times do not reveal which usernames exist.
_DUMMY_HASH = _hasher.hash("bankflow-timing-equaliser")


@dataclass(frozen=True)
class Principal:
    """An authenticated staff user as the API sees them. `admin` passes every role check."""

    id: int
    username: str
    roles: frozenset[str]


def _validate_roles(roles: Iterable[str]) -> frozenset[str]:
    wanted = frozenset(roles)
    unknown = sorted(wanted - set(ROLES))
    if unknown:
        raise BankflowError(ErrorCode.VALIDATION, f"unknown role(s): {', '.join(unknown)}")
    return wanted


async def create_staff_user(
    session: AsyncSession,
    *,
    username: str,
    full_name: str,
    password: str,
    roles: Iterable[str],
    email: str | None = None,
    branch_code: str | None = None,
) -> StaffUser:
    """Create an active staff user with the given roles; a taken username is a Duplicate."""
    wanted = _validate_roles(roles)
    if len(password) < 8:
        raise BankflowError(ErrorCode.VALIDATION, "a password needs at least 8 characters")
    branch_id = None
    if branch_code is not None:
        branch_id = await session.scalar(select(Branch.id).where(Branch.code == branch_code))
        if branch_id is None:
            raise BankflowError(ErrorCode.NOT_FOUND, f"no branch {branch_code!r}")
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    # ON CONFLICT instead of catching IntegrityError: the transaction stays usable and a
    # concurrent insert of the same username waits for the other to commit, then reports it.
    user_id = await session.scalar(
        insert(StaffUser)
        .values(
            username=username,
            full_name=full_name,
            email=email,
            password_hash=password_hash,
            branch_id=branch_id,
        )
        .on_conflict_do_nothing(index_elements=["username"])
        .returning(StaffUser.id)
    )
    if user_id is None:
        raise BankflowError(ErrorCode.DUPLICATE, f"username {username!r} is taken")
    if wanted:
        await session.execute(
            insert(StaffRole), [{"user_id": user_id, "role": r} for r in sorted(wanted)]
        )
    user = await session.get(StaffUser, user_id)
    assert user is not None
    return user


async def authenticate(session: AsyncSession, username: str, password: str) -> Principal | None:
    """The active user with this username and password, or None; never says which was wrong."""
    user = await session.scalar(select(StaffUser).where(StaffUser.username == username))
    try:
        await asyncio.to_thread(
            _hasher.verify, user.password_hash if user else _DUMMY_HASH, password
        )
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.is_active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        # Parameters were raised since this hash was made; upgrade it while we have the password.
        new_hash = await asyncio.to_thread(_hasher.hash, password)
        await session.execute(
            update(StaffUser).where(StaffUser.id == user.id).values(password_hash=new_hash)
        )
    return Principal(id=user.id, username=user.username, roles=await user_roles(session, user.id))


async def user_roles(session: AsyncSession, user_id: int) -> frozenset[str]:
    rows = await session.scalars(select(StaffRole.role).where(StaffRole.user_id == user_id))
    return frozenset(rows)


@dataclass(frozen=True)
class StaffStatus:
    principal: Principal
    is_active: bool


# Built once: this runs on every authenticated request, and building a statement costs more
# Python than executing a cached one.
_STATUS = select(
    StaffUser.username,
    StaffUser.is_active,
    func.array(select(StaffRole.role).where(StaffRole.user_id == StaffUser.id).scalar_subquery()),
).where(StaffUser.id == bindparam("user_id"))


async def staff_status(db: DirectPool, user_id: int) -> StaffStatus | None:
    """The user with their roles as they are now, in one query (a primary-key lookup and an
    index range on staff_roles' primary key), made on every authenticated request (api.deps)."""
    row = await db.one(_STATUS, {"user_id": user_id})
    if row is None:
        return None
    username, active, role_list = row
    return StaffStatus(Principal(user_id, username, frozenset(role_list)), bool(active))


# --- password login with a lockout -----------------------------------------------------------


@dataclass(frozen=True)
class LockoutPolicy:
    """After `after` consecutive failures a username is locked for `base`, doubling with each
    further failure up to `longest`; a successful login clears the count."""

    after: int
    base: timedelta
    longest: timedelta

    def lock_for(self, failures: int) -> timedelta | None:
        if failures < self.after:
            return None
        doublings = min(failures - self.after, 32)  # 2**32 minutes is past any sane ceiling
        lock: timedelta = self.base * 2**doublings
        return min(lock, self.longest)


@dataclass(frozen=True)
class LoginResult:
    principal: Principal | None
    # Seconds until this username may try again: refused unchecked, or locked by this failure.
    locked_for: int = 0
    locked_now: bool = False


def username_key(username: str) -> str:
    return username.casefold()[:64]


async def login(
    session: AsyncSession, username: str, password: str, policy: LockoutPolicy
) -> LoginResult:
    """Check a password unless the username is locked; count a failure, clear on success.

    Attempts on one username are serialised by a transaction-scoped advisory lock, in every API
    process alike, so parallel guesses cannot slip past the count. A locked username's password
    is not even checked: guessing on during a lockout learns nothing.
    """
    key = username_key(username)
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"login:{key}"}
    )
    row = (
        await session.execute(
            select(
                LoginThrottle.failures,
                func.extract("epoch", LoginThrottle.locked_until - func.now()),
            ).where(LoginThrottle.username_key == key)
        )
    ).one_or_none()
    failures, remaining = (row[0], row[1]) if row else (0, None)
    if remaining is not None and remaining > 0:
        return LoginResult(None, locked_for=math.ceil(remaining))
    principal = await authenticate(session, username, password)
    if principal is not None:
        await session.execute(delete(LoginThrottle).where(LoginThrottle.username_key == key))
        return LoginResult(principal)
    failures += 1
    lock = policy.lock_for(failures)
    locked_until = func.now() + lock if lock else None
    await session.execute(
        insert(LoginThrottle)
        .values(username_key=key, failures=failures, locked_until=locked_until)
        .on_conflict_do_update(
            index_elements=[LoginThrottle.username_key],
            set_={
                "failures": failures,
                "locked_until": locked_until,
                "last_failure_at": func.now(),
            },
        )
    )
    if lock is None:
        return LoginResult(None)
    return LoginResult(None, locked_for=math.ceil(lock.total_seconds()), locked_now=True)
