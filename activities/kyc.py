"""KYC: document intake (called by the API), and the KycReview workflow's activities: open the
case, run the automated checks, find staff to notify, and record the outcome on the member."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.accounts import get_member, open_account
from activities.errors import transaction
from activities.tables import (
    Branch,
    KycCase,
    KycDocument,
    LedgerAccount,
    Member,
    StaffRole,
    StaffUser,
)
from activities.watchlist import screen
from schemas.errors import BankflowError, ErrorCode
from schemas.kyc import (
    MUST_EXPIRE,
    NUMBERED_DOCS,
    VERIFIED_TIER,
    CheckReport,
    CheckRequest,
    CheckResult,
    CompleteRequest,
    CompleteResult,
    Contact,
    DocumentMeta,
    DocumentView,
    OpenCaseRequest,
)
from schemas.members import AccountOpen

# File types accepted, recognised by their first bytes (never by name or declared type).
MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)
IMAGE_ONLY = frozenset({"photo"})
ADULT_AGE = 18
EXPIRES_SOON = timedelta(days=90)

# (document type, issuing country or None for any) -> (rule in words, full-match pattern).
ID_FORMATS: dict[tuple[str, str | None], tuple[str, str]] = {
    ("national_id", "NG"): ("Nigeria NIN: 11 digits", r"\d{11}"),
    ("bvn", "NG"): ("Nigeria BVN: 11 digits", r"\d{11}"),
    ("national_id", "BD"): ("Bangladesh NID: 10, 13 or 17 digits", r"\d{10}|\d{13}|\d{17}"),
    ("passport", None): ("passport: 6 to 9 letters or digits", r"[A-Z0-9]{6,9}"),
}


def sniff_content_type(content: bytes) -> str | None:
    return next((kind for magic, kind in MAGIC if content.startswith(magic)), None)


async def store_document(
    session: AsyncSession,
    member_number: str,
    meta: DocumentMeta,
    content: bytes,
    *,
    max_bytes: int,
    uploaded_by: str,
) -> DocumentView:
    """Validate a document by its content and keep it; a refused file stores nothing."""
    member = await get_member(session, member_number)
    if len(content) > max_bytes:
        raise BankflowError(
            ErrorCode.DOCUMENT_TOO_LARGE, f"the file is larger than the {max_bytes}-byte limit"
        )
    kind = sniff_content_type(content)
    if kind is None:
        raise BankflowError(
            ErrorCode.DOCUMENT_REJECTED, "the file is not a PDF, JPEG or PNG (checked by content)"
        )
    if meta.doc_type in IMAGE_ONLY and not kind.startswith("image/"):
        raise BankflowError(ErrorCode.DOCUMENT_REJECTED, "a photo must be a JPEG or PNG image")
    digest = hashlib.sha256(content).hexdigest()
    doc_id = await session.scalar(
        insert(KycDocument)
        .values(
            member_id=member.id,
            doc_type=meta.doc_type,
            number=meta.number,
            issuing_country=meta.issuing_country,
            issue_date=meta.issue_date,
            expiry_date=meta.expiry_date,
            content_type=kind,
            size_bytes=len(content),
            sha256=digest,
            content=content,
            uploaded_by=uploaded_by,
        )
        .on_conflict_do_nothing(constraint="uq_kyc_documents_member_file")
        .returning(KycDocument.id)
    )
    if doc_id is None:
        raise BankflowError(ErrorCode.DUPLICATE, "this member already handed in this exact file")
    doc = await session.get(KycDocument, doc_id)
    assert doc is not None
    return document_view(doc, member_number)


def document_view(doc: KycDocument, member_number: str) -> DocumentView:
    return DocumentView(
        id=doc.id,
        member_number=member_number,
        doc_type=doc.doc_type,
        number=doc.number,
        issuing_country=doc.issuing_country,
        issue_date=doc.issue_date,
        expiry_date=doc.expiry_date,
        content_type=doc.content_type,
        size_bytes=doc.size_bytes,
        sha256=doc.sha256,
        uploaded_by=doc.uploaded_by,
        uploaded_at=doc.uploaded_at,
    )


async def next_case_number(session: AsyncSession, member: Member) -> str:
    """`M0000042-3` for a member's third case; a racing second submit meets the running
    workflow (same workflow id) and is refused by Temporal."""
    count = await session.scalar(
        select(func.count()).select_from(KycCase).where(KycCase.member_id == member.id)
    )
    return f"{member.member_number}-{(count or 0) + 1}"


async def member_branch(session: AsyncSession, member: Member) -> str:
    return await session.scalar(select(Branch.code).where(Branch.id == member.branch_id)) or ""


def age_on(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def id_format(doc: KycDocument) -> CheckResult:
    country = doc.issuing_country or ""
    rule = ID_FORMATS.get((doc.doc_type, country)) or ID_FORMATS.get((doc.doc_type, None))
    name = f"id_format:{doc.doc_type}"
    if rule is None:
        return CheckResult(name=name, passed=True, reason=f"no format rule for {country}")
    words, pattern = rule
    ok = re.fullmatch(pattern, doc.number or "") is not None
    return CheckResult(
        name=name, passed=ok, reason=f"matches {words}" if ok else f"does not match {words}"
    )


async def _latest_documents(session: AsyncSession, member_id: int) -> dict[str, KycDocument]:
    """The newest document of each type: a re-submission supersedes the one before."""
    docs = await session.scalars(
        select(KycDocument).where(KycDocument.member_id == member_id).order_by(KycDocument.id)
    )
    return {d.doc_type: d for d in docs}


async def _duplicates(session: AsyncSession, member_id: int, doc: KycDocument) -> list[str]:
    others = await session.scalars(
        select(Member.member_number)
        .join(KycDocument, KycDocument.member_id == Member.id)
        .where(
            KycDocument.doc_type == doc.doc_type,
            KycDocument.number == doc.number,
            KycDocument.issuing_country == doc.issuing_country,
            KycDocument.member_id != member_id,
        )
        .distinct()
    )
    return sorted(others)


async def run_checks(session: AsyncSession, req: CheckRequest) -> CheckReport:
    member = await session.get(Member, req.member_id)
    if member is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no member id {req.member_id}")
    docs = await _latest_documents(session, member.id)
    checks: list[CheckResult] = []
    missing: list[str] = []
    risk_reasons: list[str] = []
    high = False

    for group in req.policy.required_documents:
        present = [t for t in group if t in docs]
        label = group[0] if len(group) == 1 else "one of " + "/".join(group)
        checks.append(
            CheckResult(
                name=f"required:{'|'.join(group)}",
                passed=bool(present),
                reason=f"{present[0]} handed in" if present else f"missing {label}",
            )
        )
        if not present:
            missing.append(label)

    for doc in docs.values():
        if doc.doc_type in NUMBERED_DOCS:
            result = id_format(doc)
            checks.append(result)
            if not result.passed:
                missing.append(
                    f"a valid {doc.doc_type} ({result.reason.removeprefix('does not match ')})"
                )
            others = await _duplicates(session, member.id, doc)
            checks.append(
                CheckResult(
                    name=f"duplicate_identity:{doc.doc_type}",
                    passed=not others,
                    reason=f"the same {doc.doc_type} number is on {', '.join(others)}"
                    if others
                    else "number not held by another member",
                )
            )
            if others:
                high = True
                risk_reasons.append(f"{doc.doc_type} number already on another member")
        if doc.expiry_date is not None or doc.doc_type in MUST_EXPIRE:
            expiry = doc.expiry_date
            valid = expiry is not None and expiry > req.today
            reason = (
                f"valid until {expiry}"
                if valid
                else (f"expired on {expiry}" if expiry else "no expiry date given")
            )
            checks.append(CheckResult(name=f"expiry:{doc.doc_type}", passed=valid, reason=reason))
            if not valid:
                missing.append(f"a {doc.doc_type} that has not expired")
            elif expiry is not None and expiry - req.today <= EXPIRES_SOON:
                risk_reasons.append(f"{doc.doc_type} expires within {EXPIRES_SOON.days} days")

    age = age_on(member.date_of_birth, req.today)
    adult = age >= ADULT_AGE
    checks.append(CheckResult(name="age", passed=adult, reason=f"{age} years old on {req.today}"))

    found = await screen(
        session,
        f"{member.first_name} {member.last_name}",
        member.date_of_birth,
        hit_score=req.policy.watchlist_hit_score,
        similar_score=req.policy.watchlist_similar_score,
    )
    checks.append(
        CheckResult(
            name="watchlist",
            passed=not found.hit,
            reason=(
                f"name and date of birth match {found.reference} (score {found.score})"
                if found.hit
                else f"name similar to {found.reference} (score {found.score})"
                if found.similar
                else "no match"
            ),
        )
    )
    if found.hit:
        high = True
        risk_reasons.append("watch-list match")
    elif found.similar:
        risk_reasons.append("name similar to a watch-list entry")

    risk = "high" if high else "medium" if risk_reasons else "low"
    await session.execute(
        update(KycCase).where(KycCase.case_number == req.case_number).values(risk=risk)
    )
    return CheckReport(
        checks=checks,
        risk=risk,
        risk_reasons=risk_reasons or ["every check passed"],
        watchlist_hit=found.hit,
        underage=not adult,
        missing=missing,
    )


async def open_case(
    session: AsyncSession, req: OpenCaseRequest, workflow_id: str, run_id: str
) -> None:
    """Record the case (idempotent on its number) and mark the member's KYC pending."""
    await session.execute(
        insert(KycCase)
        .values(
            case_number=req.case_number,
            member_id=req.member_id,
            workflow_id=workflow_id,
            run_id=run_id,
            submitted_by=req.submitted_by,
        )
        .on_conflict_do_nothing()  # the case itself (a retry) or another open case (below)
    )
    case = await session.get(KycCase, req.case_number)
    if case is None:
        raise BankflowError(ErrorCode.DUPLICATE, "the member already has an open KYC case")
    await session.execute(
        update(Member)
        .where(Member.id == req.member_id, Member.kyc_status != "verified")
        .values(kyc_status="pending")
    )


async def complete_case(session: AsyncSession, req: CompleteRequest) -> CompleteResult:
    """Close the case and update the member; opens a savings account on approval if the member
    has none. Idempotent: a retry finds the case closed and answers from the rows."""
    case = await session.get(KycCase, req.case_number, with_for_update=True)
    member = await session.get(Member, req.member_id, with_for_update=True)
    if case is None or member is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no KYC case {req.case_number}")
    account = await session.scalar(
        select(LedgerAccount)
        .where(LedgerAccount.member_id == member.id, LedgerAccount.kind == "savings")
        .order_by(LedgerAccount.id)
        .limit(1)
    )
    if case.status == "open":
        if req.outcome == "approved":
            member.kyc_status, member.kyc_tier = "verified", max(member.kyc_tier, VERIFIED_TIER)
            if account is None:
                account = await open_account(
                    session, member, AccountOpen(currency=req.account_currency)
                )
        elif member.kyc_status != "verified":
            member.kyc_status = "rejected" if req.outcome == "rejected" else "unverified"
        case.status, case.outcome_reason, case.closed_at = req.outcome, req.reason, func.now()
        await session.flush()
    return CompleteResult(
        kyc_status=member.kyc_status,
        kyc_tier=member.kyc_tier,
        account_number=account.code if account is not None and req.outcome == "approved" else None,
    )


async def member_contact(session: AsyncSession, member_id: int) -> Contact | None:
    member = await session.get(Member, member_id)
    if member is None or not member.email:
        return None
    return Contact(email=member.email, name=f"{member.first_name} {member.last_name}")


async def staff_contacts(session: AsyncSession, role: str) -> list[Contact]:
    rows = await session.execute(
        select(StaffUser.email, StaffUser.full_name)
        .join(StaffRole, StaffRole.user_id == StaffUser.id)
        .where(StaffRole.role == role, StaffUser.is_active, StaffUser.email.is_not(None))
        .order_by(StaffUser.id)
    )
    return [Contact(email=email, name=name) for email, name in rows if email]


class KycActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name="kyc_open_case")
    async def open_case(self, req: OpenCaseRequest) -> None:
        info = activity.info()
        workflow_id, run_id = info.workflow_id or "", info.workflow_run_id or ""
        await transaction(self.sessions, lambda s: open_case(s, req, workflow_id, run_id))

    @activity.defn(name="kyc_run_checks")
    async def run_checks(self, req: CheckRequest) -> CheckReport:
        return await transaction(self.sessions, lambda s: run_checks(s, req))

    @activity.defn(name="kyc_complete_case")
    async def complete_case(self, req: CompleteRequest) -> CompleteResult:
        return await transaction(self.sessions, lambda s: complete_case(s, req))

    @activity.defn(name="kyc_member_contact")
    async def member_contact(self, member_id: int) -> Contact | None:
        """Only for KycReview runs from before recipient ids (workflows/recipients.py), whose
        history has this lookup; new runs name the member by id and never see the address."""
        return await transaction(self.sessions, lambda s: member_contact(s, member_id))

    @activity.defn(name="kyc_staff_contacts")
    async def staff_contacts(self, role: str) -> list[Contact]:
        """Only for runs from before recipient ids; new runs use notification_staff_recipients."""
        return await transaction(self.sessions, lambda s: staff_contacts(s, role))

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.open_case,
            self.run_checks,
            self.complete_case,
            self.member_contact,
            self.staff_contacts,
        ]
