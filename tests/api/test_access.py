"""Every route refuses a missing token (401) and a wrong role (403), in the one error shape."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from api.access_matrix import markdown
from api.errors import STATUS
from schemas.errors import ErrorCode
from schemas.ledger import LEDGER_READER_ROLES
from tests.api.conftest import Staff
from tests.conftest import Factory

# (method, path, a role that must be refused). `none` is a user with no role at all.
PROTECTED = [
    ("GET", "/v1/auth/me", None),
    ("POST", "/v1/members", "finance"),
    ("GET", "/v1/members", "none"),
    ("GET", "/v1/members/M0000001", "none"),
    ("POST", "/v1/members/M0000001/accounts", "ops"),
    ("GET", "/v1/accounts/SV00000001", "none"),
    ("GET", "/v1/accounts/SV00000001/statement", "none"),
    ("POST", "/v1/accounts/SV00000001/close", "teller"),
    ("GET", "/v1/ledger/trial-balance?currency=USD", "teller"),
    ("GET", "/v1/journals/j-1", "teller"),
    ("POST", "/v1/loans/schedule-preview", "none"),
    ("POST", "/v1/loan-products", "teller"),
    ("GET", "/v1/loan-products", "none"),
    ("GET", "/v1/loan-products/PERSONAL", "none"),
    ("POST", "/v1/loan-products/PERSONAL/schedule-preview", "none"),
    ("POST", "/v1/loans", "finance"),
    ("GET", "/v1/loans/LN000001", "none"),
    ("POST", "/v1/loans/LN000001/decisions", "teller"),
    ("POST", "/v1/loans/LN000001/amendments", "finance"),
    ("POST", "/v1/loans/LN000001/withdrawal", "finance"),
    ("POST", "/v1/loans/LN000001/guarantors/M0000001/consent", "finance"),
    ("POST", "/v1/loans/LN000001/disbursements", "teller"),
    ("GET", "/v1/loans/LN000001/disbursements", "none"),
    ("POST", "/v1/loans/LN000001/repayments", "finance"),
    ("GET", "/v1/loans/LN000001/payoff-quote", "none"),
    ("GET", "/v1/loans/LN000001/statement", "none"),
    ("GET", "/v1/approvals", "none"),
    ("POST", "/v1/journals/j-1/reversals", "ops"),
    ("GET", "/v1/journals/j-1/reversals", "none"),
    ("POST", "/v1/journals/j-1/reversals/decisions", "none"),
    ("GET", "/v1/reversals", "none"),
    ("POST", "/v1/ledger/periods/1999-01/close", "teller"),
    ("GET", "/v1/ledger/periods", "teller"),
    ("GET", "/v1/ledger/periods/1999-01", "teller"),
    ("POST", "/v1/savings-products", "teller"),
    ("GET", "/v1/savings-products", "none"),
    ("POST", "/v1/savings-products/PERSONAL/accounts", "finance"),
    ("GET", "/v1/reports/month-end/1999-01", "teller"),
    ("GET", "/v1/reports/portfolio-at-risk", "teller"),
    ("GET", "/v1/notifications", "teller"),
    ("POST", "/v1/members/M0000001/kyc/documents", "finance"),
    ("POST", "/v1/members/M0000001/kyc/submit", "finance"),
    ("GET", "/v1/kyc/M0000001-1", "none"),
    ("POST", "/v1/kyc/M0000001-1/decisions", "teller"),
    ("POST", "/v1/kyc/M0000001-1/resubmit", "finance"),
    ("GET", "/v1/kyc", "teller"),
    ("GET", "/v1/audit", "teller"),
    ("POST", "/codec/decode", "teller"),
    ("POST", "/codec/encode", "teller"),
]
PUBLIC = {"/health", "/ready", "/v1/auth/token", "/codec/sign-in", "/codec/session"}


@pytest.mark.parametrize(("method", "path", "wrong_role"), PROTECTED)
async def test_refused_without_token_and_with_wrong_role(
    client: AsyncClient, staff: dict[str, Staff], method: str, path: str, wrong_role: str | None
) -> None:
    anonymous = await client.request(method, path, headers={"Idempotency-Key": "k"})
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["error"] == "Unauthenticated"
    if wrong_role is None:
        return
    r = await client.request(
        method, path, headers=staff[wrong_role].headers | {"Idempotency-Key": "k"}, json={}
    )
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "Forbidden"


async def test_admin_passes_every_role_check(client: AsyncClient, staff: dict[str, Staff]) -> None:
    admin = staff["admin"].headers
    r = await client.get("/v1/ledger/trial-balance", params={"currency": "USD"}, headers=admin)
    assert r.status_code == 200
    assert (await client.get("/v1/members", headers=admin)).status_code == 200


def test_every_route_is_listed(api_app: FastAPI) -> None:
    """A new route of this module set must be added above, so it cannot ship without a check."""
    mine = {(m, p.split("?")[0]) for m, p, _ in PROTECTED}
    paths = api_app.openapi()["paths"]
    seen = 0
    for template, operations in paths.items():
        if "movements" in template:
            continue
        concrete = template.replace("{member_number}", "M0000001")
        concrete = concrete.replace("{number}", "SV00000001").replace("{journal_id}", "j-1")
        concrete = concrete.replace("{period}", "1999-01")
        concrete = concrete.replace("{case_number}", "M0000001-1")
        concrete = concrete.replace("{code}", "PERSONAL").replace("{loan_number}", "LN000001")
        for method, operation in operations.items():
            seen += 1
            assert (method.upper(), concrete) in mine or concrete in PUBLIC, template
            assert operation.get("description"), f"{template} has no docstring"
    assert seen == len(PROTECTED) + len(PUBLIC)


async def test_unknown_route_and_method(client: AsyncClient) -> None:
    r = await client.get("/v1/nowhere")
    assert r.status_code == 404 and r.json()["error"] == "NotFound"
    r = await client.delete("/health")
    assert r.status_code == 405 and r.json()["error"] == "MethodNotAllowed"


def test_every_error_code_has_a_status() -> None:
    """A new ErrorCode must be given its HTTP status in api.errors.STATUS, not fall to a default."""
    assert set(STATUS) == set(ErrorCode)
    assert {code for code, status in STATUS.items() if status == 404} == {
        ErrorCode.NOT_FOUND,
        ErrorCode.ACCOUNT_NOT_FOUND,
        ErrorCode.JOURNAL_NOT_FOUND,
        ErrorCode.HOLD_NOT_FOUND,
    }


async def test_gl_accounts_are_read_by_those_who_read_the_ledger(
    client: AsyncClient, staff: dict[str, Staff], factory: Factory
) -> None:
    """Issue 11.5: a GL account's view and statement are the institution's books, readable by the
    roles that read the trial balance; a member's account stays readable by tellers."""
    member = (await factory.savings_account(10_00)).code
    for path in ("/v1/accounts/4000-USD", "/v1/accounts/4000-USD/statement"):
        for role in ("teller", "compliance_officer", "none"):
            r = await client.get(path, headers=staff[role].headers)
            assert r.status_code == 403 and r.json()["error"] == "Forbidden", (path, role)
        for role in (*LEDGER_READER_ROLES, "admin"):
            r = await client.get(path, headers=staff[role].headers)
            assert r.status_code == 200, (path, role, r.text)
        mine = path.replace("4000-USD", member)
        assert (await client.get(mine, headers=staff["teller"].headers)).status_code == 200
    trial = await client.get(
        "/v1/ledger/trial-balance", params={"currency": "USD"}, headers=staff["teller"].headers
    )
    assert trial.status_code == 403


def test_the_readme_access_matrix_is_the_codes() -> None:
    """README's access matrix is generated from the routes' role checks: regenerate it with
    `bankflow access-matrix` when a route or its roles change."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    start, end = "<!-- access-matrix:start -->\n", "<!-- access-matrix:end -->"
    documented = readme[readme.index(start) + len(start) : readme.index(end)]
    assert documented == markdown()
    gl = next(line for line in documented.splitlines() if "(GL accounts)" in line)
    teller_cell = gl.split("|")[2]
    assert teller_cell.strip() == "", gl
