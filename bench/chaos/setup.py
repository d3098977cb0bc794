"""Before any fault: the staff tokens, and per chaos client a KYC-verified member with two funded
savings accounts, all through the API (members, KYC documents and review, deposits).

The members are synthetic ("Chaos Client 1" ...); no output line names them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, timedelta

from bench.chaos.books import Books, minor
from bench.chaos.client import Api

STAFF = ("teller1", "teller2", "manager1", "officer1", "finance1", "kyc1")
EMAIL_DOMAIN = "example.org"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PDF = b"%PDF-1.4\n%chaos proof of address\n"
OPENING = ("3000.00", "2000.00")  # oldest account (loans pay out here), second account
CURRENCY = "USD"


class SetupError(Exception):
    """The stack answered a set-up step wrongly before any fault: nothing to measure."""


@dataclass(frozen=True)
class Member:
    number: str
    accounts: tuple[str, str]  # the oldest first: disbursements and savings repayments use it


def teller_of(index: int) -> str:
    return STAFF[index % 2]


async def login_staff(api: Api) -> None:
    for user in STAFF:
        await api.login(user, f"{user}-demo-pass")


def expect(answer_status: int, wanted: tuple[int, ...], what: str, body: object) -> None:
    if answer_status not in wanted:
        raise SetupError(f"{what}: {answer_status} {body}")


async def verified_member(api: Api, run_tag: str, index: int) -> Member:
    """Register, open two accounts, hand in KYC documents and have the case approved."""
    teller = teller_of(index)
    today = date.today()
    registered = await api.command(
        "register member",
        teller,
        "/v1/members",
        {
            "first_name": "Chaos",
            "last_name": f"Client {run_tag} {index + 1}",
            "date_of_birth": (today - timedelta(days=365 * 30 + index)).isoformat(),
            "email": f"chaos-{run_tag}-{index + 1}@{EMAIL_DOMAIN}",
            "branch_code": "HQ",
        },
    )
    expect(registered.status, (201,), "register member", registered.body)
    number = registered.body["member_number"]
    accounts = []
    for _ in OPENING:
        opened = await api.command(
            "open account",
            teller,
            f"/v1/members/{number}/accounts",
            {"kind": "savings", "currency": CURRENCY},
        )
        expect(opened.status, (201,), "open account", opened.body)
        accounts.append(opened.body["number"])
    passport = {
        "doc_type": "passport",
        "number": f"C{run_tag[:4].upper()}{index:04d}",
        "issuing_country": "KE",
        "issue_date": (today - timedelta(days=700)).isoformat(),
        "expiry_date": (today + timedelta(days=1500)).isoformat(),
    }
    for data, content in (
        (passport, PNG),
        ({"doc_type": "proof_of_address"}, PDF),
        ({"doc_type": "photo"}, PNG + b"p"),
    ):
        uploaded = await api.command(
            "kyc document",
            teller,
            f"/v1/members/{number}/kyc/documents",
            files={"file": ("doc", content)},
            data=data,
        )
        expect(uploaded.status, (201,), "kyc document", uploaded.body)
    submitted = await api.command("kyc submit", teller, f"/v1/members/{number}/kyc/submit")
    expect(submitted.status, (201, 202), "kyc submit", submitted.body)
    case = submitted.body["case_number"]
    stage = submitted.body["stage"]
    while stage != "approved":
        if stage == "awaiting_review":
            decided = await api.command(
                "kyc decision",
                "kyc1",
                f"/v1/kyc/{case}/decisions",
                {"action": "approve", "note": "chaos"},
            )
            expect(decided.status, (200,), "kyc decision", decided.body)
        elif stage not in ("checking", "activating"):
            raise SetupError(f"KYC case {case} ended {stage}: {submitted.body.get('risk_reasons')}")
        await asyncio.sleep(0.3)
        stage = (await api.read("kyc1", f"/v1/kyc/{case}")).body["stage"]
    return Member(number, (accounts[0], accounts[1]))


async def probe_account(api: Api, run_tag: str) -> str:
    """An account for the probe's deposits: a member of its own, so no client's books race it."""
    registered = await api.command(
        "register member",
        STAFF[1],
        "/v1/members",
        {
            "first_name": "Chaos",
            "last_name": f"Probe {run_tag}",
            "date_of_birth": "1990-01-01",
            "branch_code": "HQ",
        },
    )
    expect(registered.status, (201,), "register member", registered.body)
    number = registered.body["member_number"]
    opened = await api.command(
        "open account",
        STAFF[1],
        f"/v1/members/{number}/accounts",
        {"kind": "savings", "currency": CURRENCY},
    )
    expect(opened.status, (201,), "open account", opened.body)
    return str(opened.body["number"])


async def fund(api: Api, books: Books, member: Member, index: int) -> None:
    for account, amount in zip(member.accounts, OPENING, strict=True):
        answer = await api.command(
            "deposit",
            teller_of(index),
            "/v1/movements",
            {"kind": "deposit", "amount": amount, "currency": CURRENCY, "to_account": account},
        )
        expect(answer.status, (201,), "opening deposit", answer.body)
        books.post(answer.body["journal_id"], {account: minor(amount)})


async def savings_before(api: Api, first: str) -> list[str]:
    """Every savings account opened before `first` (the demo members'; those on SAVE-STD earn
    month-end interest). Numbers are SV + the ledger account id, so the ids below it cover them."""
    found: list[str] = []
    for account_id in range(1, int(first.removeprefix("SV"))):
        number = f"SV{account_id:08d}"
        if (await api.read("finance1", f"/v1/accounts/{number}")).status == 200:
            found.append(number)
    return found
