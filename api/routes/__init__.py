"""Every router the app serves; `api.app.create_app` includes them in this order."""

from fastapi import APIRouter

from api.routes import accounts, auth, health, ledger, members, movements

ROUTERS: list[APIRouter] = [
    health.router,
    auth.router,
    members.router,
    accounts.router,
    ledger.router,
    movements.router,
]
