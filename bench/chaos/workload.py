"""One chaos client: a teller's day on its own member's two accounts, and that member's loans.

Each client owns its member, so its books never race another client's; the next client's member
guarantees its loans. Every step waits for a definitive answer (bench/chaos/client.py) and books
only what that answer says moved. A step whose process answers "still running" (202 posting) is
followed through the process's own read endpoint until it settles.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.chaos.books import Books, LoanBook, major, minor
from bench.chaos.client import Answer, Api
from bench.chaos.setup import CURRENCY, Member, teller_of

MANAGER = "manager1"
OFFICER = "officer1"
FLOOR_MINOR = 1_000_00  # never spend an account below this: guarantees and loans stay eligible
THRESHOLD_MINOR = 500_00  # BANKFLOW_APPROVAL_THRESHOLD's default
MOVEMENT_SETTLED = {"awaiting_approval", "completed", "declined", "rejected", "expired"}
REVERSAL_SETTLED = {"awaiting_approval", "completed", "refused", "declined", "rejected", "expired"}
MAX_REPAYMENTS = 3
# A loan in one of these takes no more steps: the client applies for the next one.
DONE_STAGES = frozenset({"rejected", "withdrawn", "stuck"})
APPROVERS = {"loan_officer": OFFICER, "branch_manager": MANAGER}


async def settle_movement(api: Api, state: dict[str, Any], decided: bool = False) -> dict[str, Any]:
    """Follow a movement to where it stops: done, or (until decided) awaiting approval."""
    settled = MOVEMENT_SETTLED - ({"awaiting_approval"} if decided else set())
    path = f"/v1/movements/{state['movement_id']}"
    result: dict[str, Any] = await api.poll(MANAGER, path, lambda s: s["stage"] in settled, state)
    return result


@dataclass
class Client:
    index: int
    api: Api
    books: Books
    member: Member
    guarantor: Member
    rng: random.Random
    deposits: list[tuple[str, str, int]] = field(default_factory=list)  # journal, account, amount
    loan: LoanBook | None = None
    unexpected: list[str] = field(default_factory=list)

    @property
    def teller(self) -> str:
        return teller_of(self.index)

    # --- the loop ---------------------------------------------------------------------------

    async def run(self, until: float, extra: Callable[[], Awaitable[None]] | None = None) -> None:
        """Steps until the clock passes `until`; `extra` (month-end) runs once, mid-way."""
        steps: list[tuple[float, Callable[[], Awaitable[None]]]] = [
            (3, self.deposit),
            (2, self.withdrawal),
            (1, self.large_withdrawal),
            (2, self.transfer),
            (1, self.reverse_deposit),
            (3, self.loan_step),
        ]
        extra_at = self.api.now() + (until - self.api.now()) * self.rng.uniform(0.3, 0.6)
        while self.api.now() < until:
            if extra is not None and self.api.now() >= extra_at:
                await extra()
                extra = None
            weights, actions = zip(*steps, strict=True)
            await self.rng.choices(actions, weights)[0]()
            await asyncio.sleep(self.rng.uniform(0.1, 0.4))

    def note(self, what: str, answer: Answer) -> None:
        self.unexpected.append(f"{what}: {answer.status} {answer.error or ''} on {answer.path}")

    def spendable(self, account: str) -> int:
        return (
            self.books.expected_minor(account) - self.books.expected_pending(account) - FLOOR_MINOR
        )

    def amount(self, low: int, high: int) -> int:
        return self.rng.randrange(low, high + 1) * 100 + self.rng.choice((0, 25, 50))

    # --- movements --------------------------------------------------------------------------

    async def deposit(self) -> None:
        account = self.rng.choice(self.member.accounts)
        amount = self.amount(10, 400)
        state = await self.movement({"kind": "deposit", "to_account": account}, amount)
        if state is not None and state["stage"] == "completed":
            self.deposits.append((state["journal_id"], account, amount))

    async def withdrawal(self) -> None:
        account = self.rng.choice(self.member.accounts)
        amount = self.amount(10, 300)
        if self.spendable(account) >= amount:
            await self.movement({"kind": "withdrawal", "from_account": account}, amount)

    async def large_withdrawal(self) -> None:
        """Above the approval threshold: the funds are held and a branch manager decides."""
        account = self.rng.choice(self.member.accounts)
        amount = self.amount(501, 700)
        if self.spendable(account) >= amount:
            await self.movement({"kind": "withdrawal", "from_account": account}, amount)

    async def transfer(self) -> None:
        source, target = self.rng.sample(self.member.accounts, 2)
        amount = self.amount(10, 650)
        if self.spendable(source) >= amount:
            await self.movement(
                {"kind": "transfer", "from_account": source, "to_account": target}, amount
            )

    async def movement(self, accounts: dict[str, str], amount: int) -> dict[str, Any] | None:
        """Request a movement, decide it if it waits for approval, book what it did."""
        body = {**accounts, "amount": major(amount), "currency": CURRENCY}
        answer = await self.api.command(body["kind"], self.teller, "/v1/movements", body)
        if answer.status == 422:
            return None  # refused by the ledger: nothing moved
        if answer.status not in (201, 202):
            self.note("movement", answer)
            return None
        state = await settle_movement(self.api, answer.body)
        if state["stage"] == "awaiting_approval":
            approve = self.rng.random() < 0.75
            decision = await self.api.command(
                "movement decision",
                MANAGER,
                f"/v1/movements/{state['movement_id']}/decisions",
                {"approve": approve, "reason": "chaos: supervisor checked"},
            )
            if not decision.ok and decision.error != "NotAwaitingDecision":
                self.note("movement decision", decision)
            state = await settle_movement(
                self.api, decision.body if decision.ok else state, decided=True
            )
        if state["stage"] == "completed":
            effects = {}
            if "from_account" in accounts:
                effects[accounts["from_account"]] = -amount
            if "to_account" in accounts:
                effects[accounts["to_account"]] = amount
            self.books.post(state["journal_id"], effects)
        return state

    # --- reversals --------------------------------------------------------------------------

    async def reverse_deposit(self) -> None:
        candidates = [d for d in self.deposits if self.spendable(d[1]) >= d[2]]
        if not candidates:
            return
        journal, account, amount = self.rng.choice(candidates)
        self.deposits.remove((journal, account, amount))
        reversal = await self.reversal(journal)
        if reversal is not None:
            self.books.post(reversal, {account: -amount})

    async def reversal(self, journal: str) -> str | None:
        """Ask for a reversal, have a branch manager approve it; the mirror journal's id."""
        path = f"/v1/journals/{journal}/reversals"
        body = {"reason_code": "duplicate", "reason": "chaos: keyed twice"}
        answer = await self.api.command("reversal", self.teller, path, body)
        if not answer.ok:
            self.note("reversal", answer)
            return None
        state = await self.settle_reversal(journal, answer.body)
        if state["stage"] == "awaiting_approval":
            approve = not state["needs_override"]
            decision = await self.api.command(
                "reversal decision",
                MANAGER,
                f"{path}/decisions",
                {"approve": approve, "reason": "chaos: confirmed"},
            )
            if not decision.ok and decision.error not in ("NotAwaitingDecision", "Duplicate"):
                self.note("reversal decision", decision)
            state = await self.settle_reversal(
                journal, decision.body if decision.ok else state, True
            )
        return state["reversal_journal_id"] if state["stage"] == "completed" else None

    async def settle_reversal(
        self, journal: str, state: dict[str, Any], decided: bool = False
    ) -> dict[str, Any]:
        settled = REVERSAL_SETTLED - ({"awaiting_approval"} if decided else set())
        path = f"/v1/journals/{journal}/reversals"
        result: dict[str, Any] = await self.api.poll(
            MANAGER, path, lambda s: s["stage"] in settled, state
        )
        return result

    # --- loans ------------------------------------------------------------------------------

    async def loan_step(self) -> None:
        """One step of this member's current loan: apply, consent, decide, disburse, repay."""
        loan = self.loan
        if loan is None or loan.stage in DONE_STAGES or len(loan.repayments) >= MAX_REPAYMENTS:
            # half the loans end with their latest repayment reversed (none reversed before)
            if loan is not None and loan.repayments and not any(loan.repayments.values()):
                if self.rng.random() < 0.5:
                    await self.reverse_repayment(loan)
            await self.apply()
        elif loan.stage == "awaiting_guarantors":
            # Not the teller who entered it: the workflow refuses the maker (separation of duties).
            await self.loan_command(
                "guarantor consent",
                OFFICER,
                f"/v1/loans/{loan.number}/guarantors/{self.guarantor.number}/consent",
                {"accept": True, "note": "chaos: signed the form"},
                "awaiting_guarantors",
            )
        elif loan.stage == "awaiting_approval":
            await self.decide(loan)
        elif loan.state == "approved" and loan.disbursement_journal is None:
            await self.disburse(loan)
        elif loan.state == "active":
            await self.repay(loan)

    async def apply(self) -> None:
        principal = self.rng.randrange(3, 16) * 100_00
        guarantee = principal * 30 // 100
        body = {
            "member_number": self.member.number,
            "product": "PERSONAL",
            "principal": major(principal),
            "repayments": 6,
            "purpose": "chaos: working capital",
            "guarantors": [{"member_number": self.guarantor.number, "amount": major(guarantee)}],
        }
        answer = await self.api.command("loan application", self.teller, "/v1/loans", body)
        if answer.status not in (201, 202):
            self.note("loan application", answer)
            self.loan = None
            return
        loan = LoanBook(
            answer.body["loan_number"],
            self.member.accounts[0],
            self.guarantor.accounts[0],
            guarantee,
        )
        self.books.loans[loan.number] = self.loan = loan
        await self.follow(loan, answer.body)

    async def follow(self, loan: LoanBook, view: dict[str, Any], *passing: str) -> None:
        """Wait out the workflow's own steps: eligibility, and the stages in `passing`."""
        waiting = ("checking_eligibility", *passing)
        path = f"/v1/loans/{loan.number}"
        view = await self.api.poll(self.teller, path, lambda v: v["stage"] not in waiting, view)
        loan.stage, loan.state = view["stage"], view["state"]

    async def loan_command(
        self, label: str, user: str, path: str, body: dict[str, Any], *passing: str
    ) -> None:
        """A decision or consent; a retry that finds it already taken reads the loan instead."""
        assert self.loan is not None
        answer = await self.api.command(label, user, path, body)
        if not answer.ok and answer.error not in ("NotAwaitingDecision", "AlreadyVoted"):
            self.note(label, answer)
        view = (
            answer.body
            if answer.ok
            else (await self.api.read(user, f"/v1/loans/{self.loan.number}")).body
        )
        await self.follow(self.loan, view, *passing)

    async def decide(self, loan: LoanBook) -> None:
        view = (await self.api.read(OFFICER, f"/v1/loans/{loan.number}")).body
        approver = APPROVERS.get(view["assigned_role"] or "")
        if approver is None:
            self.unexpected.append(f"{loan.number} waits for {view['assigned_role']}")
            loan.stage = "stuck"
            return
        body = {"action": "approve", "reason": "chaos: good savings record"}
        if self.rng.random() < 0.1:
            body = {"action": "reject", "reason": "chaos: declined"}
        await self.loan_command(
            "loan decision", approver, f"/v1/loans/{loan.number}/decisions", body
        )

    async def disburse(self, loan: LoanBook) -> None:
        path = f"/v1/loans/{loan.number}/disbursements"
        answer = await self.api.command("disbursement", MANAGER, path, {"destination": "savings"})
        if not answer.ok and answer.error != "LoanStateConflict":
            self.note("disbursement", answer)
            return
        # the saga runs on after the 202: follow its attempts
        attempts = await self.api.poll(
            MANAGER, path, lambda a: bool(a) and a[-1]["status"] != "in_progress", []
        )
        last = attempts[-1]
        if last["status"] == "completed":
            loan.disbursement_journal = last["journal_id"]
            self.books.post(
                last["journal_id"],
                {loan.borrower_account: minor(last["amount"]) - minor(last["fee"])},
            )
        view = (await self.api.read(MANAGER, f"/v1/loans/{loan.number}")).body
        loan.stage, loan.state = view["stage"], view["state"]

    async def repay(self, loan: LoanBook) -> None:
        source = self.rng.choice(("cash", "savings"))
        amount = self.amount(20, 60)
        if source == "savings" and self.spendable(loan.borrower_account) < amount:
            source = "cash"
        path = f"/v1/loans/{loan.number}/repayments"
        answer = await self.api.command(
            f"repayment ({source})", self.teller, path, {"amount": major(amount), "source": source}
        )
        if not answer.ok:
            if answer.status != 422:
                self.note("repayment", answer)
            return
        journal = answer.body["journal_id"]
        taken = minor(answer.body["amount"]) - minor(answer.body["overpayment"])
        self.books.post(journal, {loan.borrower_account: -taken} if source == "savings" else {})
        loan.repayments[journal] = False
        loan.state = answer.body["loan_state"]
        loan.sources[journal] = (source, taken)

    async def reverse_repayment(self, loan: LoanBook) -> None:
        """The latest repayment only: no later one needs re-allocating."""
        journal = list(loan.repayments)[-1]
        reversal = await self.reversal(journal)
        if reversal is None:
            return
        source, taken = loan.sources[journal]
        self.books.post(reversal, {loan.borrower_account: taken} if source == "savings" else {})
        loan.repayments[journal] = True
