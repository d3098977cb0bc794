"""Business error codes, defined once. They are Temporal ApplicationError types in activities and
workflows, and the `error` field of the API's error body."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # ledger
    JOURNAL_CONFLICT = "JournalConflict"
    HOLD_CONFLICT = "HoldConflict"
    INSUFFICIENT_FUNDS = "InsufficientFunds"
    ACCOUNT_NOT_FOUND = "AccountNotFound"
    ACCOUNT_CLOSED = "AccountClosed"
    CURRENCY_MISMATCH = "CurrencyMismatch"
    HOLD_NOT_FOUND = "HoldNotFound"
    HOLD_ALREADY_RESOLVED = "HoldAlreadyResolved"
    JOURNAL_NOT_FOUND = "JournalNotFound"
    ALREADY_REVERSED = "AlreadyReversed"
    NOT_REVERSIBLE = "NotReversible"
    ACCOUNT_NOT_EMPTY = "AccountNotEmpty"
    INVALID_POSTING = "InvalidPosting"
    # API
    VALIDATION = "ValidationError"
    INVALID_AMOUNT = "InvalidAmount"
    NOT_FOUND = "NotFound"
    UNAUTHENTICATED = "Unauthenticated"
    FORBIDDEN = "Forbidden"
    IDEMPOTENCY_CONFLICT = "IdempotencyKeyConflict"
    IDEMPOTENCY_IN_PROGRESS = "IdempotencyKeyInProgress"
    RATE_LIMITED = "RateLimited"
    LOGIN_LOCKED = "LoginLocked"  # too many failed logins for one username
    DUPLICATE = "Duplicate"
    INVALID_DATA = "InvalidData"  # the database or a model refused a value a retry cannot change
    DATABASE_UNAVAILABLE = "DatabaseUnavailable"  # retryable: connection lost, deadlock, restart
    REQUEST_TOO_LARGE = "RequestTooLarge"
    # processes
    FOUR_EYES = "FourEyesViolation"
    NOT_AWAITING_DECISION = "NotAwaitingDecision"
    PROCESS_UNAVAILABLE = "ProcessUnavailable"
    # reversals and period close
    PERIOD_CLOSED = "PeriodClosed"
    PERIOD_NOT_ENDED = "PeriodNotEnded"
    OVERRIDE_REQUIRED = "OverdraftOverrideRequired"

    # KYC documents and notifications
    DOCUMENT_REJECTED = "DocumentRejected"
    DOCUMENT_TOO_LARGE = "DocumentTooLarge"
    NOTIFICATION_REJECTED = "NotificationRejected"
    # KYC tiers: a member not KYC-verified asked for more than the basic tier allows
    KYC_TIER_LIMIT = "KycTierLimit"
    # loans
    ALREADY_VOTED = "AlreadyVoted"
    LOAN_NOT_ELIGIBLE = "LoanNotEligible"
    GUARANTEE_NOT_MET = "GuaranteeNotMet"
    INVALID_SCHEDULE = "InvalidSchedule"
    # loan book: disbursement, repayments, daily job
    LOAN_STATE = "LoanStateConflict"  # the loan's state does not allow this (yet, or any more)
    PAYOUT_REJECTED = "PayoutRejected"


class BankflowError(Exception):
    """An expected business failure: never retried, always shown to the caller with its code."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def known_code(value: str | None) -> ErrorCode | None:
    """The ErrorCode named by a string from outside (a workflow state, an ApplicationError type)."""
    try:
        return ErrorCode(value) if value else None
    except ValueError:
        return None
