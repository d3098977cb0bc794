"""A real local payment rail for tests: an HTTP server on 127.0.0.1 (a free port, a thread),
scriptable to accept, reject, fail with 503, answer slowly, or hang.

Like a real rail it keeps the Idempotency-Key: a repeated key gets the first payout's answer and
never makes a second payout. `payouts` are the payouts made, `requests` every request seen.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Mode = Literal["accept", "reject", "error", "hang"]


@dataclass
class FakeRail:
    url: str = ""
    mode: Mode = "accept"
    delay_s: float = 0.0  # answer this much later (accept only): a payout "in flight"
    payouts: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    received: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests.append({"key": key, **body})
            self.received.set()
            if key in self.payouts:
                return 201, self.payouts[key]
            if self.mode == "reject":
                return 422, {"reason": f"account {body.get('account_number')} is closed"}
            if self.mode == "error":
                return 503, {"reason": "rail maintenance"}
            if self.mode == "hang":
                return 0, {}
            # The payout is made on receipt, before the (possibly slow) answer: a caller that
            # never hears back must not cause a second payout when it retries.
            self.payouts[key] = {"reference": f"RAIL-{uuid.uuid4().hex[:10].upper()}", **body}
            return 201, self.payouts[key]


def _handler(rail: FakeRail) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            key = self.headers.get("Idempotency-Key") or ""
            status, answer = rail.answer(key, body)
            if status == 0:  # hang until the test ends; the client times out
                rail.stopping.wait(60)
                return
            if rail.delay_s:
                rail.stopping.wait(rail.delay_s)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def running_rail(mode: Mode = "accept") -> Iterator[FakeRail]:
    rail = FakeRail(mode=mode)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rail))
    server.daemon_threads = True
    rail.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rail
    finally:
        rail.stopping.set()
        server.shutdown()
        server.server_close()
