"""The demo institution for `make run`: a branch, the chart of accounts, one staff user per role,
and a few members with funded savings accounts. Safe to run again: it creates only what is
missing, and the opening deposits carry fixed journal ids so they post once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from activities.accounts import create_member, open_account
from activities.kyc import store_document
from activities.ledger import engine as ledger_engine
from activities.ledger.chart import CASH, EQUITY, ensure_branch, ensure_chart
from activities.seed.loans import seed_demo_loan
from activities.seed.products import seed_demo_savings, seed_products
from activities.staff import create_staff_user, user_roles
from activities.tables import KycCase, KycDocument, LedgerAccount, Member, StaffUser
from domain.money import to_minor
from schemas.errors import BankflowError, ErrorCode
from schemas.kyc import DocumentMeta
from schemas.ledger import JournalRequest, PostingLine
from schemas.members import AccountOpen, MemberCreate

BRANCH_CODE = "HQ"
CURRENCY = "USD"

DEMO_STAFF: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("teller1", "Tendai Teller", ("teller",)),
    ("teller2", "Tomas Teller", ("teller",)),
    ("manager1", "Mariam Manager", ("branch_manager",)),
    ("officer1", "Olu Loan-Officer", ("loan_officer",)),
    ("committee1", "Chidi Committee", ("credit_committee",)),
    ("committee2", "Carmen Committee", ("credit_committee",)),
    ("kyc1", "Kamal Reviewer", ("kyc_reviewer",)),
    ("compliance1", "Comfort Compliance", ("compliance_officer",)),
    ("finance1", "Fatima Finance", ("finance",)),
    ("ops1", "Oscar Operations", ("ops",)),
    ("admin", "Ada Admin", ("admin",)),
)

DEMO_MEMBERS: tuple[tuple[str, str, date, str, str], ...] = (
    ("Amina", "Okafor", date(1985, 3, 14), "amina.okafor@example.org", "1500.00"),
    ("Rahim", "Chowdhury", date(1979, 11, 2), "rahim.chowdhury@example.org", "820.50"),
    ("Grace", "Wanjiru", date(1992, 7, 21), "grace.wanjiru@example.org", "2500.00"),
)
CAPITAL = "100000.00"


@dataclass(frozen=True)
class DemoUser:
    user_id: int
    username: str
    password: str
    roles: frozenset[str]


def demo_password(username: str) -> str:
    return f"{username}-demo-pass"


async def _staff(session: AsyncSession) -> list[DemoUser]:
    users: list[DemoUser] = []
    for username, full_name, roles in DEMO_STAFF:
        user = await session.scalar(select(StaffUser).where(StaffUser.username == username))
        if user is None:
            user = await create_staff_user(
                session,
                username=username,
                full_name=full_name,
                password=demo_password(username),
                roles=roles,
                branch_code=BRANCH_CODE,
                email=f"{username}@demo.bankflow.local",
            )
        users.append(
            DemoUser(user.id, username, demo_password(username), await user_roles(session, user.id))
        )
    return users


async def _deposit(
    session: AsyncSession, journal_id: str, debit: int, credit: int, amount: str
) -> None:
    await ledger_engine.post_journal(
        session,
        JournalRequest(
            journal_id=journal_id,
            kind="deposit",
            value_date=date.today(),
            description="Demo opening balance",
            postings=[
                PostingLine(
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount_minor=to_minor(amount, 2),
                    currency=CURRENCY,
                )
            ],
        ),
    )


async def seed_demo(session: AsyncSession) -> list[DemoUser]:
    """Seed (or top up) the demo institution inside the caller's transaction."""
    await ensure_branch(session, BRANCH_CODE, "Head office", "Africa/Nairobi")
    chart = await ensure_chart(session, CURRENCY)
    users = await _staff(session)
    await _deposit(session, "seed-capital", chart[CASH.number], chart[EQUITY.number], CAPITAL)
    for first, last, born, email, opening in DEMO_MEMBERS:
        member = await _demo_member(session, first, last, born, email)
        account = await session.scalar(
            select(LedgerAccount).where(
                LedgerAccount.member_id == member.id, LedgerAccount.kind == "savings"
            )
        )
        if account is None:
            account = await open_account(session, member, AccountOpen(currency=CURRENCY))
        await _deposit(
            session, f"seed-opening-{member.member_number}", chart[CASH.number], account.id, opening
        )
    # loans: the demo loan products; Amina Okafor is a long-standing, KYC-verified member, so the
    # README's loan walkthrough has an eligible applicant without a KYC review first
    await seed_products(session)
    await session.execute(
        sql_update(Member)
        .where(Member.email == DEMO_MEMBERS[0][3], Member.kyc_status == "unverified")
        .values(kyc_status="verified")
    )
    # month-end: the demo savings product, with the demo members' savings accounts on it
    demo_savings = await session.scalars(
        select(LedgerAccount)
        .join(Member, Member.id == LedgerAccount.member_id)
        .where(Member.email.in_([m[3] for m in DEMO_MEMBERS]), LedgerAccount.kind == "savings")
        .order_by(LedgerAccount.id)
    )
    await seed_demo_savings(session, chart[CASH.number], list(demo_savings), date.today())
    # loans: one loan imported from the previous system, in arrears (the daily job's demo)
    await seed_demo_loan(session, date.today())
    return users


# KYC: an applicant whose case waits for a kyc_reviewer (medium risk: the passport expires within
# 90 days). The CLI starts the KycReview workflow for it once Temporal answers.
KYC_APPLICANT = ("Kwame", "Asante", date(1988, 9, 30), "kwame.asante@example.org")
# The smallest files their magic bytes recognise; enough for the checks, which read metadata.
DEMO_PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
DEMO_PDF = b"%PDF-1.4\n%demo proof of address\n"


async def _demo_member(
    session: AsyncSession, first: str, last: str, born: date, email: str
) -> Member:
    """The demo member with this e-mail, registered at the demo branch on the first seed."""
    member = await session.scalar(select(Member).where(Member.email == email))
    if member is None:
        member = await create_member(
            session,
            MemberCreate(
                first_name=first,
                last_name=last,
                date_of_birth=born,
                email=email,
                branch_code=BRANCH_CODE,
            ),
        )
    return member


async def seed_kyc_applicant(session: AsyncSession) -> tuple[str, int, bool]:
    """The applicant's member number and id, and whether a KYC case should be started for it
    (its documents are in and it never had a case)."""
    first, last, born, email = KYC_APPLICANT
    member = await _demo_member(session, first, last, born, email)
    has_documents = await session.scalar(
        select(KycDocument.id).where(KycDocument.member_id == member.id).limit(1)
    )
    if has_documents is None:
        today = date.today()
        for meta, content in (
            (
                DocumentMeta(
                    doc_type="passport",
                    number="A07734512",
                    issuing_country="GH",
                    issue_date=today.replace(year=today.year - 5),
                    expiry_date=today + timedelta(days=60),
                ),
                DEMO_PNG,
            ),
            (DocumentMeta(doc_type="proof_of_address"), DEMO_PDF),
            (DocumentMeta(doc_type="photo"), DEMO_PNG + b"photo"),
        ):
            await store_document(
                session,
                member.member_number,
                meta,
                content,
                max_bytes=10 * 1024 * 1024,
                uploaded_by="teller1",
            )
    had_case = await session.scalar(
        select(KycCase.case_number).where(KycCase.member_id == member.id).limit(1)
    )
    return member.member_number, member.id, had_case is None


async def demo_user(session: AsyncSession, username: str) -> DemoUser:
    user = await session.scalar(select(StaffUser).where(StaffUser.username == username))
    if user is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no demo user {username!r}: run `seed demo`")
    return DemoUser(user.id, username, demo_password(username), await user_roles(session, user.id))
