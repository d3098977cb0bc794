"""HTTP around the codec endpoint (api/routes/codec.py) that no other route gets: CORS for the
Temporal Web UI's origin, and the codec cookie as credentials.

Both apply to paths under /codec only. Every other route keeps answering no cross-origin reader
and accepting nothing but a bearer header, so a cookie can never act on a member's money
(no cross-site request forgery surface outside the codec). The cookie is turned into the bearer
header before the request guard and the role checks run, so a cookie caller is authenticated,
role-checked and audited exactly like a bearer caller.
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "bankflow_codec"
COOKIE_PATH = "/codec"
PREFIX = COOKIE_PATH + "/"


def _codec_path(scope: Scope) -> bool:
    return scope["type"] == "http" and str(scope["path"]).startswith(PREFIX)


def _cookie_token(headers: Headers) -> str | None:
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except CookieError:
        return None
    morsel = cookie.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


class CodecHttpMiddleware:
    """CORS (the configured origins, credentials allowed) and cookie credentials, /codec only."""

    def __init__(self, app: ASGIApp, *, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            self._with_cookie,
            allow_origins=origins,
            allow_methods=["POST"],
            allow_headers=["Content-Type", "X-Namespace", "Authorization"],
            allow_credentials=True,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _codec_path(scope):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _with_cookie(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        if "authorization" not in headers:
            token = _cookie_token(headers)
            if token is not None:
                scope = dict(scope)
                scope["headers"] = [
                    *scope["headers"],
                    (b"authorization", f"Bearer {token}".encode("latin-1")),
                ]
        await self.app(scope, receive, send)
