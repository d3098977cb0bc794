"""HTTP hygiene: no caching of any answer, no sniffing, a Content-Security-Policy that lets the
API's JSON load nothing, and a /docs page that works with local assets under its own policy."""

from __future__ import annotations

import base64
import hashlib
import re

from httpx import AsyncClient, Response

from tests.api.conftest import PASSWORD, Staff


def assert_hygienic(r: Response) -> None:
    assert r.headers["Cache-Control"] == "no-store", r.request.url
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"


async def test_token_personal_data_and_errors_are_never_cached(
    client: AsyncClient, staff: dict[str, Staff]
) -> None:
    teller = staff["teller"]
    token = await client.post(
        "/v1/auth/token", data={"username": teller.username, "password": PASSWORD}
    )
    assert token.status_code == 200 and token.json()["access_token"]
    members = await client.get("/v1/members", headers=teller.headers)
    refused = await client.get("/v1/members")
    missing = await client.get("/v1/nowhere")
    for r in (token, members, refused, missing):
        assert_hygienic(r)
        policy = r.headers["Content-Security-Policy"]
        assert policy.startswith("default-src 'none'") and "frame-ancestors 'none'" in policy
    assert refused.status_code == 401 and missing.status_code == 404


async def test_docs_load_only_local_assets_and_their_own_inline_script(
    client: AsyncClient,
) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert_hygienic(page)
    html = page.text
    assert not re.search(r"(src|href)=\"https?://", html)  # nothing from another site
    policy = dict(
        part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";")
    )
    assert "https:" not in page.headers["Content-Security-Policy"]
    inline = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert policy["script-src"] == f"'self' 'sha256-{digest}'"
    assert policy["connect-src"] == "'self'" and policy["default-src"] == "'none'"
    for asset in re.findall(r"(?:src|href)=\"(/docs/assets/[^\"]+)\"", html):
        served = await client.get(asset)
        assert served.status_code == 200 and len(served.content) > 1000, asset
    spec = await client.get("/openapi.json")
    assert spec.status_code == 200 and "/v1/audit" in spec.json()["paths"]
    redirect = await client.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200 and "sha256-" in redirect.headers["Content-Security-Policy"]
