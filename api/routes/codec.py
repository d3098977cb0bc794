"""Temporal's remote codec for the Web UI: payloads in, payloads out (decrypted, or encrypted).

The Temporal server only ever holds ciphertext (schemas/payload_codec.py); the Web UI shows a
history decoded only when the operator's browser asks this endpoint, which decrypts for staff
holding ops or compliance_officer (or admin), and audits every call: who, which namespace, how
many payloads and, when the caller says so, which workflow. The protocol (temporalio/samples-go
codec-server/protocol.md): `POST /codec/decode` and `POST /codec/encode`, body and answer
`{"payloads": [{"metadata": {key: base64}, "data": base64}]}`, the namespace in `X-Namespace`.

Signing in: the UI either sends a bearer token (its "pass access token" setting, over https
only, and only its own OIDC token) or the browser's cookies ("include cross-origin
credentials"). The cookie is set by `POST /codec/session` (username and password, as for a token;
HttpOnly, SameSite=Strict, path /codec only, for the token's lifetime) and turned into the bearer
header by api.codec_http for /codec paths alone, so no other route accepts a cookie. The UI's
origin is the only one CORS lets read the answers (`codec_cors_origins`).
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from temporalio.api.common.v1 import Payload

from api.audit import AUDIT_DETAIL
from api.codec_http import COOKIE, COOKIE_PATH
from api.deps import Principal, SessionsDep, SettingsDep, require_roles
from api.errors import errors
from api.login import TokenForm, password_login
from schemas import types
from schemas.errors import BankflowError, ErrorCode
from schemas.payload_codec import EncryptionCodec, PayloadCodecError

router = APIRouter(prefix="/codec", tags=["codec"])

Operator = Annotated[Principal, Depends(require_roles("ops", "compliance_officer"))]
MAX_PAYLOADS = 1000
# The UI's pages are /namespaces/<ns>/workflows/<workflow id>/<run id>/...: a Referer that names
# one (a same-origin deployment, or a client that sends it) says which workflow was read.
_WORKFLOW_IN_PAGE = re.compile(r"/namespaces/[^/]+/workflows/([^/?#]{1,200})")
SIGN_IN_POLICY = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"


class JsonPayload(BaseModel):
    """One Payload in protobuf JSON: metadata values and data base64-encoded."""

    metadata: dict[types.Search, Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict, max_length=32
    )
    data: str = Field(default="", max_length=4 * 1024 * 1024)


class JsonPayloads(BaseModel):
    payloads: list[JsonPayload] = Field(default_factory=list, max_length=MAX_PAYLOADS)


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BankflowError(ErrorCode.VALIDATION, "metadata and data must be base64") from None


def _from_json(body: JsonPayloads) -> list[Payload]:
    try:
        return [
            Payload(metadata={k: _b64(v) for k, v in p.metadata.items()}, data=_b64(p.data))
            for p in body.payloads
        ]
    except ValueError:  # a metadata key protobuf cannot encode (a lone surrogate, say)
        raise BankflowError(ErrorCode.VALIDATION, "metadata keys must be valid text") from None


def _to_json(payloads: list[Payload]) -> JsonPayloads:
    return JsonPayloads(
        payloads=[
            JsonPayload(
                metadata={k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                data=base64.b64encode(p.data).decode(),
            )
            for p in payloads
        ]
    )


def _served_namespace(settings: SettingsDep, namespace: str | None) -> str:
    if namespace is not None and namespace != settings.temporal_namespace:
        raise BankflowError(
            ErrorCode.VALIDATION,
            f"this codec serves namespace {settings.temporal_namespace!r}, not {namespace!r}",
        )
    return settings.temporal_namespace


def _audit(request: Request, action: str, namespace: str, count: int) -> None:
    page = _WORKFLOW_IN_PAGE.search(request.headers.get("referer", ""))
    workflow = page.group(1) if page else "not told"
    request.scope.setdefault("state", {})[AUDIT_DETAIL] = (
        f"{action} namespace={namespace} payloads={count} workflow={workflow}"
    )


Namespace = Annotated[types.Search | None, Header(alias="X-Namespace")]


@router.post("/decode", responses=errors(s422="ValidationError, or InvalidData: undecryptable"))
async def decode(
    body: JsonPayloads,
    request: Request,
    _: Operator,
    settings: SettingsDep,
    namespace: Namespace = None,
) -> JsonPayloads:
    """Decrypt payloads for the Temporal Web UI (remote codec protocol). Ops, compliance.

    Audited: who, the namespace (`X-Namespace`), the number of payloads and the workflow when
    the request's Referer names its page. Payloads that are not encrypted come back as they are;
    one that fails authentication or names a key the ring lacks is 422 `InvalidData`, never
    returned half-decoded.
    """
    served = _served_namespace(settings, namespace)
    _audit(request, "decode", served, len(body.payloads))
    codec = EncryptionCodec(settings.payload_keys)
    try:
        decoded = await codec.decode(_from_json(body))
    except PayloadCodecError as exc:
        raise BankflowError(ErrorCode.INVALID_DATA, str(exc)) from exc
    return _to_json(decoded)


@router.post("/encode")
async def encode(
    body: JsonPayloads,
    request: Request,
    _: Operator,
    settings: SettingsDep,
    namespace: Namespace = None,
) -> JsonPayloads:
    """Encrypt payloads the Web UI sends (a signal's or a reset's input). Ops, compliance.

    Encrypted with the newest key of `BANKFLOW_PAYLOAD_KEYS`, as every client does. Audited.
    """
    served = _served_namespace(settings, namespace)
    _audit(request, "encode", served, len(body.payloads))
    codec = EncryptionCodec(settings.payload_keys)
    return _to_json(await codec.encode(_from_json(body)))


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page() -> HTMLResponse:
    """A sign-in form for the Web UI's operators: it sets the codec cookie (`POST /codec/session`).

    Open it on the same host name as the Web UI (127.0.0.1 with 127.0.0.1:8233), so the browser
    sends the cookie with the UI's requests to this endpoint.
    """
    page = (
        "<!doctype html><title>bankflow codec sign-in</title>"
        "<h1>Sign in to decode Temporal histories</h1>"
        '<form method="post" action="/codec/session">'
        '<label>Username <input name="username" autocomplete="username" required></label> '
        '<label>Password <input name="password" type="password" '
        'autocomplete="current-password" required></label> '
        "<button>Sign in</button></form>"
    )
    return HTMLResponse(page, headers={"content-security-policy": SIGN_IN_POLICY})


@router.post(
    "/session",
    response_class=HTMLResponse,
    responses=errors(
        s401="Unauthenticated: wrong username or password", s429="RateLimited: see Retry-After"
    ),
)
async def open_session(
    request: Request,
    form: Annotated[TokenForm, Depends()],
    settings: SettingsDep,
    sessions: SessionsDep,
) -> HTMLResponse:
    """Sign in for the codec endpoint (form fields `username`, `password`): sets its cookie.

    The same login, limits and lockout as `POST /v1/auth/token`. The cookie holds a token of the
    usual lifetime, is HttpOnly, SameSite=Strict, Secure outside BANKFLOW_ENV=dev, and is sent
    to /codec only; it lets ops and compliance staff decode, nobody else.
    """
    token = await password_login(request, form, settings, sessions)
    who = html.escape(token.username)
    hours = token.expires_in // 3600
    response = HTMLResponse(
        f"<!doctype html><title>signed in</title><p>Signed in as {who} for {hours} h. "
        "Reload the Temporal Web UI: it decodes through this endpoint if you hold ops or "
        "compliance_officer.</p>",
        headers={"content-security-policy": SIGN_IN_POLICY},
    )
    response.set_cookie(
        COOKIE,
        token.access_token,
        max_age=token.expires_in,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=settings.env != "dev",
    )
    return response
