"""HTTP hygiene on every response, and the /docs page that lives with it.

- `Cache-Control: no-store` on everything: every answer is for one authenticated user (tokens,
  members, balances), so no browser or proxy may keep a copy. Simpler and safer than deciding
  per route which answers hold personal data.
- `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`.
- `Content-Security-Policy`: the API serves JSON, so nothing may load, frame or submit from it.
  The Swagger UI page is the one HTML page; it gets its own policy (below).

/docs serves Swagger UI from the assets the `fastapi-offline` package ships, under /docs/assets,
instead of FastAPI's default CDN: the page that holds a bearer token runs no third-party script,
and nothing is fetched from elsewhere. Its policy allows scripts from this origin plus the
page's own inline start-up script by its hash, styles from this origin (Swagger UI also sets
inline styles), images from this origin and data: URIs, and requests to this origin only.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import re

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS = "/docs"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
ASSETS = "/docs/assets"
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": API_POLICY,
}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


class SecurityHeadersMiddleware:
    """Adds HEADERS to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def _page(html: HTMLResponse) -> HTMLResponse:
    """The page with a policy allowing exactly its own inline scripts, by hash."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(bytes(html.body).decode())
    )
    html.headers["content-security-policy"] = (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    )
    return html


def install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs (the app is built with docs_url=None and redoc_url=None)."""
    assets = importlib.resources.files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get(DOCS, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _page(
            get_swagger_ui_html(
                openapi_url=app.openapi_url or "/openapi.json",
                title=f"{app.title} - API",
                swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{ASSETS}/favicon.png",
                oauth2_redirect_url=OAUTH2_REDIRECT,
                swagger_ui_parameters=app.swagger_ui_parameters,
            )
        )

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return _page(get_swagger_ui_oauth2_redirect_html())
