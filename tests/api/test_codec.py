"""The remote codec endpoint for the Temporal Web UI: ops and compliance decode, nobody else;
every decode audited; CORS for the UI's origin only; the cookie counts on /codec only."""

from __future__ import annotations

import base64

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.common.v1 import Payload

from activities.tables import AuditEntry
from api.codec_http import COOKIE
from schemas import temporal
from schemas.payload_codec import ENCODING
from schemas.settings import Settings
from tests.api.conftest import PASSWORD, Staff

UI = "http://127.0.0.1:8233"
SECRET = {"member_id": 7, "note": "Kwame Asante, kwame.asante@example.org"}


def as_json(payloads: list[Payload]) -> dict[str, object]:
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    }


def from_json(body: dict[str, list[dict[str, object]]]) -> list[Payload]:
    return [
        Payload(
            metadata={str(k): base64.b64decode(str(v)) for k, v in dict(p["metadata"]).items()},  # type: ignore[call-overload]
            data=base64.b64decode(str(p["data"])),
        )
        for p in body["payloads"]
    ]


@pytest.fixture
async def sealed(api_settings: Settings) -> dict[str, object]:
    """One payload as the server stores it: pydantic JSON, encrypted by the production codec."""
    payloads = await temporal.data_converter(api_settings).encode([SECRET])
    assert payloads[0].metadata["encoding"] == ENCODING
    return as_json(payloads)


async def test_ops_and_compliance_decode_and_each_decode_is_audited(
    client: AsyncClient,
    staff: dict[str, Staff],
    sealed: dict[str, object],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    page = f"{UI}/namespaces/default/workflows/loan-LN000042/abc-run/history"
    for role in ("ops", "compliance_officer", "admin"):
        r = await client.post(
            "/codec/decode",
            json=sealed,
            headers=staff[role].headers | {"X-Namespace": "default", "Referer": page},
        )
        assert r.status_code == 200, r.text
        [plain] = from_json(r.json())
        assert plain.metadata["encoding"] == b"json/plain"
        assert b"kwame.asante@example.org" in plain.data
    async with sessions() as session:
        rows = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.actor_username == staff["ops"].username)
            )
        )
    [entry] = [e for e in rows if e.action == "POST /codec/decode"]
    assert entry.actor_user_id == staff["ops"].id and entry.outcome == "ok"
    assert "decode namespace=default payloads=1 workflow=loan-LN000042" in entry.resource


async def test_a_teller_and_an_anonymous_caller_are_refused(
    client: AsyncClient, staff: dict[str, Staff], sealed: dict[str, object]
) -> None:
    for path in ("/codec/decode", "/codec/encode"):
        anonymous = await client.post(path, json=sealed)
        assert anonymous.status_code == 401 and anonymous.json()["error"] == "Unauthenticated"
        teller = await client.post(path, json=sealed, headers=staff["teller"].headers)
        assert teller.status_code == 403 and teller.json()["error"] == "Forbidden"
        assert "kwame" not in (anonymous.text + teller.text).lower()


async def test_a_tampered_payload_is_refused_not_returned(
    client: AsyncClient, staff: dict[str, Staff], api_settings: Settings
) -> None:
    [payload] = await temporal.data_converter(api_settings).encode([SECRET])
    broken = Payload(metadata=dict(payload.metadata), data=payload.data[:-1] + b"\x00")
    r = await client.post("/codec/decode", json=as_json([broken]), headers=staff["ops"].headers)
    assert r.status_code == 422 and r.json()["error"] == "InvalidData"
    assert "failed authentication" in r.json()["detail"]
    bad = {"payloads": [{"metadata": {"encoding": "!!not base64"}, "data": ""}]}
    r = await client.post("/codec/decode", json=bad, headers=staff["ops"].headers)
    assert r.status_code == 422 and r.json()["error"] == "ValidationError"


async def test_unencrypted_payloads_come_back_unchanged_and_encode_round_trips(
    client: AsyncClient, staff: dict[str, Staff]
) -> None:
    old = [Payload(metadata={"encoding": b"json/plain"}, data=b'{"stage":"posted"}')]
    r = await client.post("/codec/decode", json=as_json(old), headers=staff["ops"].headers)
    assert r.status_code == 200 and from_json(r.json()) == old
    enc = await client.post("/codec/encode", json=as_json(old), headers=staff["ops"].headers)
    assert enc.status_code == 200
    [sealed] = from_json(enc.json())
    assert sealed.metadata["encoding"] == ENCODING and b"posted" not in sealed.data
    back = await client.post("/codec/decode", json=enc.json(), headers=staff["ops"].headers)
    assert from_json(back.json()) == old


async def test_another_namespace_is_refused(
    client: AsyncClient, staff: dict[str, Staff], sealed: dict[str, object]
) -> None:
    r = await client.post(
        "/codec/decode", json=sealed, headers=staff["ops"].headers | {"X-Namespace": "other"}
    )
    assert r.status_code == 422 and "serves namespace 'default'" in r.json()["detail"]


async def test_the_sign_in_cookie_works_on_the_codec_only(
    client: AsyncClient, staff: dict[str, Staff], sealed: dict[str, object]
) -> None:
    form = await client.get("/codec/sign-in")
    assert form.status_code == 200 and 'action="/codec/session"' in form.text
    assert "form-action 'self'" in form.headers["content-security-policy"]
    signed = await client.post(
        "/codec/session", data={"username": staff["ops"].username, "password": PASSWORD}
    )
    assert signed.status_code == 200, signed.text
    cookie = signed.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/codec", "Secure"):
        assert attribute.lower() in cookie.lower(), cookie
    token = signed.cookies[COOKIE]
    client.cookies.clear()
    jar = {"cookie": f"{COOKIE}={token}"}
    r = await client.post("/codec/decode", json=sealed, headers=jar)
    assert r.status_code == 200, r.text
    elsewhere = await client.get("/v1/auth/me", headers=jar)
    assert elsewhere.status_code == 401  # a cookie is no credential outside /codec
    teller = await client.post(
        "/codec/session", data={"username": staff["teller"].username, "password": PASSWORD}
    )
    client.cookies.clear()
    refused = await client.post(
        "/codec/decode", json=sealed, headers={"cookie": f"{COOKIE}={teller.cookies[COOKIE]}"}
    )
    assert refused.status_code == 403
    wrong = await client.post(
        "/codec/session", data={"username": staff["ops"].username, "password": "wrong-password"}
    )
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers


async def test_cors_lets_the_web_ui_origin_in_and_nobody_else(client: AsyncClient) -> None:
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace",
    }
    ok = await client.options("/codec/decode", headers=ask | {"Origin": UI})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == UI
    assert ok.headers["access-control-allow-credentials"] == "true"
    evil = await client.options("/codec/decode", headers=ask | {"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in evil.headers
    elsewhere = await client.get("/health", headers={"Origin": UI})
    assert "access-control-allow-origin" not in elsewhere.headers


@pytest.mark.parametrize(
    "origins", ["*", "http://ui.example/path", "ftp://ui.example", "https://*.example"]
)
def test_codec_cors_origins_must_be_exact_origins(origins: str) -> None:
    with pytest.raises(ValueError, match="codec CORS origin"):
        Settings(codec_cors_origins=origins)
    assert Settings(codec_cors_origins="https://ui.bank.example:8443").codec_cors_origins == [
        "https://ui.bank.example:8443"
    ]


async def test_a_metadata_key_protobuf_cannot_take_is_a_validation_error(
    client: AsyncClient, staff: dict[str, Staff]
) -> None:
    body = '{"payloads": [{"metadata": {"\\ud800": ""}, "data": ""}]}'
    r = await client.post(
        "/codec/decode",
        content=body,
        headers=staff["ops"].headers | {"Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
