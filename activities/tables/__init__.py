"""Every SQLAlchemy table of bankflow, one module per area, on one metadata (`Base.metadata`, which
Alembic's env and the schema drift test use). Import tables from here, not from the area modules:
importing this package is what puts every table on the metadata.

- `core`: branches, members, currencies, ledger accounts, journals, postings, holds, idempotency
  records and the audit log;
- `staff`: staff users, their roles, the login throttle;
- `loans`: loan products, loans, guarantors, loan events;
- `loan_book`: disbursements, instalments, loan transactions, PAR snapshots;
- `savings`: savings products and accounts, interest postings, month-end runs;
- `kyc`: KYC documents and cases, the watchlist;
- `reversals`: ledger periods and reversal events;
- `notifications`: the notification outbox.
"""

from activities.tables.base import NAMING_CONVENTION, Base
from activities.tables.core import (
    ACCOUNT_KINDS,
    GL_TYPES,
    AuditEntry,
    Branch,
    Currency,
    Hold,
    IdempotencyRecord,
    Journal,
    LedgerAccount,
    Member,
    Posting,
)
from activities.tables.kyc import CASE_STATUSES, DOC_TYPES, KycCase, KycDocument, WatchlistEntry
from activities.tables.loan_book import (
    DISBURSEMENT_STATUSES,
    HOLDING_STATUSES,
    TRANSACTION_KINDS,
    Disbursement,
    LoanInstallment,
    LoanTransaction,
    ParSnapshot,
)
from activities.tables.loans import (
    GUARANTOR_STATUSES,
    LOAN_STATES,
    Loan,
    LoanEvent,
    LoanGuarantor,
    LoanProduct,
    LoanTerms,
)
from activities.tables.notifications import NOTIFICATION_STATUSES, Notification
from activities.tables.reversals import (
    PERIOD_CLOSED_SQLSTATE,
    PERIOD_LOCK_CLASS,
    LedgerPeriod,
    ReversalEvent,
)
from activities.tables.savings import InterestPosting, MonthEndRun, SavingsAccount, SavingsProduct
from activities.tables.staff import ROLES, LoginThrottle, StaffRole, StaffUser

__all__ = [
    "ACCOUNT_KINDS",
    "CASE_STATUSES",
    "DISBURSEMENT_STATUSES",
    "DOC_TYPES",
    "GL_TYPES",
    "GUARANTOR_STATUSES",
    "HOLDING_STATUSES",
    "LOAN_STATES",
    "NAMING_CONVENTION",
    "NOTIFICATION_STATUSES",
    "PERIOD_CLOSED_SQLSTATE",
    "PERIOD_LOCK_CLASS",
    "ROLES",
    "TRANSACTION_KINDS",
    "AuditEntry",
    "Base",
    "Branch",
    "Currency",
    "Disbursement",
    "Hold",
    "IdempotencyRecord",
    "InterestPosting",
    "Journal",
    "KycCase",
    "KycDocument",
    "LedgerAccount",
    "LedgerPeriod",
    "Loan",
    "LoanEvent",
    "LoanGuarantor",
    "LoanInstallment",
    "LoanProduct",
    "LoanTerms",
    "LoanTransaction",
    "LoginThrottle",
    "Member",
    "MonthEndRun",
    "Notification",
    "ParSnapshot",
    "Posting",
    "ReversalEvent",
    "SavingsAccount",
    "SavingsProduct",
    "StaffRole",
    "StaffUser",
    "WatchlistEntry",
]
