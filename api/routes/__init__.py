"""Every router the app serves; `api.app.create_app` includes them in this order."""

from fastapi import APIRouter

from api.routes import accounts, auth, health, ledger, members, movements, notifications
from api.routes import periods, reversals
from api.routes import schedule
from api.routes import approvals, loan_products, loans

ROUTERS: list[APIRouter] = [
    health.router,
    auth.router,
    members.router,
    accounts.router,
    ledger.router,
    movements.router,
    notifications.router,
    reversals.router,
    periods.router,
    schedule.router,
    loan_products.router,
    loans.router,
    approvals.router,
]
