"""Staff users: creation with an argon2id password hash, and password authentication.

Both run inside the caller's transaction. Hashing and verifying are deliberately slow (that is the
point of argon2), so they run in a worker thread and never stall the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from activities.models import ROLES, Branch, StaffRole, StaffUser
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


async def is_active(session: AsyncSession, user_id: int) -> bool:
    """One primary-key lookup, made on every authenticated request (see api.deps)."""
    return bool(await session.scalar(select(StaffUser.is_active).where(StaffUser.id == user_id)))
