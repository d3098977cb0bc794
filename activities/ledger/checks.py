"""What a journal or a hold does to each account it touches, and the rules an account applies to
that change: it exists, is open, is in the posting's currency, and does not go overdrawn (its
pending holds included).

The rules are written twice, side by side, on purpose: `verdict_sql` in SQL, so that a journal is
locked, checked and written by one statement (activities/ledger/engine.py), and `check_deltas`
in Python, which names the account and the rule when that statement refuses. Both read the
locked rows; tests/ledger/test_ledger_checks.py holds them equal over random accounts and
deltas.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from activities.db import pg_array
from schemas.errors import BankflowError, ErrorCode


@dataclass
class Delta:
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def nonzero(self) -> bool:
        return any(
            (self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending)
        )


@dataclass
class Deltas:
    by_account: dict[int, Delta] = field(default_factory=lambda: defaultdict(Delta))
    currency_of: dict[int, str] = field(default_factory=dict)

    def post(self, debit: int, credit: int, amount: int, currency: str) -> None:
        self.by_account[debit].debits_posted += amount
        self.by_account[credit].credits_posted += amount
        self.currency_of[debit] = self.currency_of[credit] = currency

    def pend(self, debit: int, credit: int, amount: int, currency: str) -> None:
        self.by_account[debit].debits_pending += amount
        self.by_account[credit].credits_pending += amount
        self.currency_of[debit] = self.currency_of[credit] = currency

    def arrays(self) -> dict[str, str]:
        """The deltas as the `delta` parameters of the engine's statement, by ascending id: array
        literals (activities.db.pg_array), which cost a tenth of psycopg's dumping of lists."""
        ids = sorted(self.by_account)
        rows = [self.by_account[i] for i in ids]
        return {
            "ids": pg_array(ids),
            "dp": pg_array(d.debits_posted for d in rows),
            "cp": pg_array(d.credits_posted for d in rows),
            "dpe": pg_array(d.debits_pending for d in rows),
            "cpe": pg_array(d.credits_pending for d in rows),
            "currencies": pg_array(self.currency_of[i] for i in ids),
        }


class Locked(NamedTuple):
    """An account row as the engine locks it (these columns of ledger_accounts, in order)."""

    id: int
    code: str
    status: str
    currency: str
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    debits_posted_minor: int
    credits_posted_minor: int
    debits_pending_minor: int
    credits_pending_minor: int


LOCKED_SQL = ", ".join(f"a.{column}" for column in Locked._fields)


def verdict_sql(dp: str, cp: str, dpe: str, cpe: str, currency: str) -> str:
    """SQL true when check_deltas lets one locked account `l` (LOCKED_SQL) take its change: the
    arguments are the SQL of that change (debits and credits posted and pending, its currency).
    `:check_open` false lets a hold resolve on a closed account. Sums in numeric: a bigint sum
    that overflowed would be an error, not a refusal."""
    return f"""
    (l.status = 'open' OR NOT CAST(:check_open AS boolean))
    AND l.currency = {currency}
    AND NOT (l.debits_must_not_exceed_credits
             AND CAST({dp} AS numeric) + {dpe} > 0
             AND CAST(l.debits_posted_minor AS numeric) + l.debits_pending_minor + {dp} + {dpe}
                 > CAST(l.credits_posted_minor AS numeric) + {cp})
    AND NOT (l.credits_must_not_exceed_debits
             AND CAST({cp} AS numeric) + {cpe} > 0
             AND CAST(l.credits_posted_minor AS numeric) + l.credits_pending_minor + {cp} + {cpe}
                 > CAST(l.debits_posted_minor AS numeric) + {dp})
    """


def check_deltas(rows: list[tuple[Any, ...]], deltas: Deltas, *, check_open: bool = True) -> None:
    """Raise before anything is written if a locked account refuses its delta: missing, closed,
    in another currency, or overdrawn (pending holds included)."""
    accounts = {row[0]: Locked(*row) for row in rows}
    missing = [i for i in sorted(deltas.by_account) if i not in accounts]
    if missing:
        raise BankflowError(ErrorCode.ACCOUNT_NOT_FOUND, f"no ledger account {missing[0]}")
    for account_id, delta in sorted(deltas.by_account.items()):
        acc = accounts[account_id]
        if check_open and acc.status != "open":
            raise BankflowError(ErrorCode.ACCOUNT_CLOSED, f"account {acc.code} is closed")
        if acc.currency != deltas.currency_of[account_id]:
            raise BankflowError(
                ErrorCode.CURRENCY_MISMATCH,
                f"account {acc.code} is in {acc.currency}, not {deltas.currency_of[account_id]}",
            )
        debits = acc.debits_posted_minor + acc.debits_pending_minor
        credits = acc.credits_posted_minor + acc.credits_pending_minor
        new_debits = debits + delta.debits_posted + delta.debits_pending
        new_credits = credits + delta.credits_posted + delta.credits_pending
        new_credits_posted = acc.credits_posted_minor + delta.credits_posted
        new_debits_posted = acc.debits_posted_minor + delta.debits_posted
        grows_debits = delta.debits_posted + delta.debits_pending > 0
        grows_credits = delta.credits_posted + delta.credits_pending > 0
        if acc.debits_must_not_exceed_credits and grows_debits and new_debits > new_credits_posted:
            raise BankflowError(
                ErrorCode.INSUFFICIENT_FUNDS, f"insufficient funds in account {acc.code}"
            )
        if acc.credits_must_not_exceed_debits and grows_credits and new_credits > new_debits_posted:
            raise BankflowError(
                ErrorCode.INSUFFICIENT_FUNDS,
                f"account {acc.code} cannot be credited beyond its debits",
            )
