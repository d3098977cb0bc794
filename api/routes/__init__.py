"""Every router the app serves; `api.app.create_app` includes them in this order."""

from fastapi import APIRouter

from api.routes import (
    accounts,
    approvals,
    audit,
    auth,
    disbursements,
    health,
    kyc,
    ledger,
    loan_products,
    loan_reports,
    loans,
    members,
    movements,
    notifications,
    periods,
    repayments,
    reports,
    reversals,
    savings_products,
    schedule,
)

ROUTERS: list[APIRouter] = [
    health.router,
    auth.router,
    members.router,
    accounts.router,
    ledger.router,
    movements.router,
    notifications.router,
    kyc.router,
    reversals.router,
    periods.router,
    schedule.router,
    loan_products.router,
    loans.router,
    disbursements.router,
    approvals.router,
    savings_products.router,
    reports.router,
    loan_reports.router,
    repayments.router,
    audit.router,
]
