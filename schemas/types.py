"""The constrained types of every request field, path and query parameter (DESIGN.md, "Security").

Whatever a caller sends is one of these before it reaches a workflow or Postgres, so bad input is
a 422 `ValidationError` at the edge and never a database error, a crash or a retried activity:
- text carries no control characters (a NUL byte is refused by Postgres, and the others have no
  place in a name, a narrative or an id) and has a maximum length;
- integers that Postgres stores as BIGINT (ids, cursors, minor units) stay inside BIGINT;
- dates stay inside a business calendar, so date arithmetic never leaves Python's or Postgres's;
- amounts are short decimal strings (parsed exactly by `domain.money.to_minor`), rates and
  percentages decimals with the places their columns keep, so nothing is ever rounded.

Workflow inputs built from a request use the same types, so a process can only start with what
the edge accepted.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated

from pydantic import Field, StringConstraints

from domain.money import MAX_AMOUNT_LENGTH, MAX_MINOR
from domain.periods import PERIOD_PATTERN

MAX_BIGINT = MAX_MINOR
# C0 controls, DEL and C1 controls. Free text may also hold tabs and line breaks.
CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f"
LINE_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
NO_CONTROL = rf"^[^{CONTROL_CHARACTERS}]*$"
NO_CONTROL_BUT_LINES = rf"^[^{LINE_CONTROLS}]*$"
# The business calendar: birth dates of living members to the longest loan term from today.
MIN_DATE = date(1900, 1, 1)
MAX_DATE = date(2999, 12, 31)


def line(max_length: int, *, min_length: int = 0, pattern: str = NO_CONTROL) -> StringConstraints:
    """One line of text: no control characters, at most `max_length` characters. A narrower
    `pattern` (an id's shape) must exclude control characters itself."""
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=pattern)


def lines(max_length: int, *, min_length: int = 0) -> StringConstraints:
    """Free text a person types (a reason, a narrative): line breaks and tabs allowed, no other
    control characters."""
    return line(max_length, min_length=min_length, pattern=NO_CONTROL_BUT_LINES)


# --- text -------------------------------------------------------------------------------------
Name = Annotated[str, line(100, min_length=1)]
LongName = Annotated[str, line(200, min_length=1)]
Search = Annotated[str, line(100)]
Reason = Annotated[str, lines(500)]
Note = Annotated[str, lines(1000)]
Amount = Annotated[str, line(MAX_AMOUNT_LENGTH, min_length=1)]
"""A decimal string in major units ("305.00"); `to_minor` parses it exactly or refuses it."""
CurrencyCode = Annotated[str, line(3, pattern=r"^[A-Z]{3}$")]
CountryCode = Annotated[
    str, StringConstraints(min_length=2, max_length=2, pattern=r"^[A-Za-z]{2}$", to_upper=True)
]
"""ISO 3166-1 alpha-2, kept in capitals."""
BranchCode = Annotated[str, line(20, min_length=1, pattern=r"^[A-Za-z0-9_-]+$")]
ProductCode = Annotated[str, line(32, pattern=r"^[A-Z0-9][A-Z0-9_-]{1,31}$")]
MemberNumber = Annotated[str, line(20, pattern=r"^M[0-9]{7,19}$")]
LoanNumber = Annotated[str, line(21, pattern=r"^LN[0-9]{6,19}$")]
AccountNumber = Annotated[str, line(32, min_length=1)]
"""A member account (SV00000042) or a GL account code (4000-USD, or the institution's own)."""
JournalId = Annotated[str, line(200, min_length=1)]
ProcessId = Annotated[str, line(200, min_length=1)]
Email = Annotated[str, line(320, min_length=3)]
DocumentNumber = Annotated[str, line(64)]
IdempotencyKeyValue = Annotated[str, line(200, min_length=1)]
Username = Annotated[str, line(64, min_length=1)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=256)]
"""Any characters (it is only hashed), but bounded: Argon2 over megabytes is a denial of service."""
Template = Annotated[str, line(100, pattern=r"^[a-z0-9_]+$")]
CaseNumber = Annotated[str, line(27, pattern=r"^M[0-9]{7,19}-[0-9]{1,6}$")]
"""A KYC case: the member number and the member's case count (M0000042-2)."""
MovementId = Annotated[str, line(18, pattern=r"^MV[0-9A-F]{16}$")]
ProcessType = Annotated[str, line(40, pattern=r"^[A-Za-z]{1,40}$")]
"""A workflow type (LoanApproval, MoneyMovement, ...)."""
Period = Annotated[str, line(7, pattern=PERIOD_PATTERN)]
"""A calendar month, yyyy-mm."""


def printable(value: str, max_length: int) -> str:
    """`value` without control characters, cut to `max_length`: for recording what a caller sent
    (a path, a user agent) where refusing it is not an option."""
    return re.sub(f"[{CONTROL_CHARACTERS}]", "", value)[:max_length]


# --- numbers ----------------------------------------------------------------------------------
Id = Annotated[int, Field(ge=1, le=MAX_BIGINT)]
Cursor = Annotated[int, Field(ge=0, le=MAX_BIGINT, description="`next_cursor` of the last page")]
Rate = Annotated[
    Decimal,
    Field(ge=0, le=1000, max_digits=12, decimal_places=6, allow_inf_nan=False),
]
"""Percent per year, exact to 6 decimals (the rate columns' scale): 12.5 is 12.5 %."""
Percent = Annotated[
    Decimal,
    Field(ge=0, le=100, max_digits=9, decimal_places=6, allow_inf_nan=False),
]
"""A share in percent, exact to 6 decimals."""
Multiple = Annotated[
    Decimal, Field(gt=0, le=1000, max_digits=10, decimal_places=6, allow_inf_nan=False)
]
"""A factor such as "principal at most K times savings", exact to 6 decimals."""

# --- dates ------------------------------------------------------------------------------------
Day = Annotated[date, Field(ge=MIN_DATE, le=MAX_DATE)]
"""A business date between 1900-01-01 and 2999-12-31."""
