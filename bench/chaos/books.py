"""The clients' own books, kept from definitive answers only, and the end-of-run comparison with
what the product shows through its API (account views and statements, loan statements).

Per account the books hold, for each journal a definitive answer named, the net amount it must
have moved on that account (credits minus debits, minor units), and the holds that must still
be pending. The comparison counts:
- lost: a journal an answer named that is missing from an account it must touch;
- duplicated: a journal on an account that no answer named (a second posting of one request),
  or a journal of the right id with postings beyond what the answer said;
- mismatched: an account whose balance or pending amount differs from the books, or a loan
  whose statement disagrees with the repayments and reversals the clients were told about.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from bench.chaos.client import Api

FINANCE = "finance1"


def minor(amount: str | None) -> int:
    """A major-unit decimal string ("305.00") as USD minor units."""
    return int(Decimal(amount or "0") * 100)


def major(amount_minor: int) -> str:
    return f"{Decimal(amount_minor) / 100:.2f}"


@dataclass
class LoanBook:
    number: str
    borrower_account: str
    guarantor_account: str
    guarantee_minor: int
    stage: str = "checking_eligibility"
    state: str = "submitted_and_pending_approval"
    disbursement_journal: str | None = None
    repayments: dict[str, bool] = field(default_factory=dict)  # journal id -> reversed
    sources: dict[str, tuple[str, int]] = field(default_factory=dict)  # journal -> source, taken

    @property
    def liened(self) -> bool:
        """Guarantor liens stand from disbursement until the loan closes."""
        return self.disbursement_journal is not None and self.state == "active"


@dataclass
class Books:
    baseline_minor: dict[str, int] = field(default_factory=dict)
    baseline_journals: dict[str, set[str]] = field(default_factory=dict)
    moves: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    loans: dict[str, LoanBook] = field(default_factory=dict)

    def post(self, journal_id: str, effects: dict[str, int]) -> None:
        """A definitive answer said `journal_id` posted: net effect per account (none on member
        accounts for a cash repayment, which the loan's statement checks)."""
        for account, amount in effects.items():
            self.moves[account][journal_id] = self.moves[account].get(journal_id, 0) + amount

    def expected_minor(self, account: str) -> int:
        return self.baseline_minor.get(account, 0) + sum(self.moves[account].values())

    def expected_pending(self, account: str) -> int:
        """Guarantor liens: every other hold is decided within the operation that placed it."""
        return sum(
            loan.guarantee_minor
            for loan in self.loans.values()
            if loan.liened and loan.guarantor_account == account
        )


@dataclass
class Verdict:
    lost: int = 0
    duplicated: int = 0
    mismatched: int = 0
    findings: list[str] = field(default_factory=list)

    def add(self, kind: str, finding: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.findings.append(f"{kind}: {finding}")


async def statement_journals(api: Api, account: str) -> dict[str, int]:
    """Every journal on an account with its net effect there, from the paged statement."""
    journals: dict[str, int] = defaultdict(int)
    after: int | None = None
    while True:
        params = {"limit": 500} | ({"after": after} if after is not None else {})
        page = (await api.read(FINANCE, f"/v1/accounts/{account}/statement", **params)).body
        for line in page["lines"]:
            journals[line["journal_id"]] += minor(line["credit"]) - minor(line["debit"])
        after = page["next_cursor"]
        if after is None or not page["lines"]:
            return dict(journals)


async def snapshot(api: Api, books: Books, accounts: list[str]) -> None:
    """The accounts as they stand before the workload: the books start from here."""
    for account in accounts:
        view = (await api.read(FINANCE, f"/v1/accounts/{account}")).body
        books.baseline_minor[account] = minor(view["balance"])
        books.baseline_journals[account] = set(await statement_journals(api, account))


async def compare_accounts(
    api: Api, books: Books, verdict: Verdict, interest_prefix: str, earning: set[str]
) -> int:
    """Each account against the books. Month-end interest (journals named `interest_prefix`) is
    priced by the product, not the books: at most one such journal per account, only on the
    accounts that earn it; returns their total, to set against the month-end summary."""
    total_interest = 0
    for account in sorted(books.baseline_minor):
        actual = await statement_journals(api, account)
        expected = books.moves[account]
        interest = {j: v for j, v in actual.items() if j.startswith(interest_prefix)}
        if account not in earning:
            interest = {}
        elif len(interest) > 1:
            verdict.add("duplicated", f"{account} got {len(interest)} month-end journals")
        total_interest += sum(interest.values())
        for journal, amount in expected.items():
            if journal not in actual:
                verdict.add("lost", f"{journal} not on {account}")
            elif actual[journal] != amount:
                verdict.add(
                    "duplicated" if abs(actual[journal]) > abs(amount) else "lost",
                    f"{journal} moved {major(actual[journal])} on {account}, "
                    f"answered {major(amount)}",
                )
        known = set(expected) | books.baseline_journals[account] | set(interest)
        for journal in set(actual) - known:
            verdict.add("duplicated", f"{journal} on {account}: no answer named it")
        view = (await api.read(FINANCE, f"/v1/accounts/{account}")).body
        want = books.expected_minor(account) + sum(interest.values())
        if minor(view["balance"]) != want:
            verdict.add("mismatched", f"{account} balance {view['balance']}, books {major(want)}")
        if minor(view["pending_debits"]) != books.expected_pending(account):
            verdict.add(
                "mismatched",
                f"{account} pending debits {view['pending_debits']}, books "
                f"{major(books.expected_pending(account))}",
            )
    return total_interest


async def compare_loans(api: Api, books: Books, verdict: Verdict) -> None:
    """Each loan's state and transactions against what the clients were answered."""
    for loan in books.loans.values():
        view = (await api.read(FINANCE, f"/v1/loans/{loan.number}")).body
        if view["state"] != loan.state:
            verdict.add("mismatched", f"{loan.number} is {view['state']}, books {loan.state}")
        if loan.disbursement_journal is None:
            continue
        statement = (await api.read(FINANCE, f"/v1/loans/{loan.number}/statement")).body
        seen: dict[str, list[bool]] = defaultdict(list)
        for txn in statement["transactions"]:
            seen[txn["journal_id"]].append(bool(txn["reversed"]))
        expected = {loan.disbursement_journal: False, **loan.repayments}
        for journal, reversed_ in expected.items():
            found = seen.pop(journal, [])
            if not found:
                verdict.add("lost", f"{journal} missing from {loan.number}'s statement")
            elif len(found) > 1:
                verdict.add("duplicated", f"{journal} {len(found)} times on {loan.number}")
            elif found[0] != reversed_:
                verdict.add("mismatched", f"{journal} on {loan.number}: reversed={found[0]}")
        for journal in seen:
            verdict.add("duplicated", f"{journal} on {loan.number}: no answer named it")
