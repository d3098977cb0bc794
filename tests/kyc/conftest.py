"""KYC and notification test harness: a local HTTP server playing SendGrid's v3 /mail/send."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.api.conftest import api_app, api_settings, staff

__all__ = ["api_app", "api_settings", "staff"]


@dataclass
class SendGridRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeSendGrid:
    """Answers each POST with the next scripted status (then 202), and records every request."""

    url: str = ""
    requests: list[SendGridRequest] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            return self.script.pop(0) if self.script else 202

    def next_delay(self) -> float:
        with self.lock:
            return self.delays.pop(0) if self.delays else 0.0

    @property
    def accepted(self) -> list[SendGridRequest]:
        """Requests answered 202: the messages SendGrid would deliver."""
        return [r for r in self.requests if r.headers.get("x-fake-status") == "202"]


def _handler(fake: FakeSendGrid) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            status = fake.next_status()
            time.sleep(fake.next_delay())  # a slow provider: the activity times out meanwhile
            headers = {k.lower(): v for k, v in self.headers.items()}
            headers["x-fake-status"] = str(status)
            with fake.lock:
                fake.requests.append(SendGridRequest(self.path, headers, body))
            self.send_response(status)
            if status == 202:
                self.send_header("X-Message-Id", f"fake-{len(fake.requests)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            payload = json.dumps({"errors": [{"message": f"scripted {status}"}]}).encode()
            if status == 429:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            return

    return Handler


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    fake = FakeSendGrid()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
