"""API throughput: authenticated reads, deposits into one hot account, and the framework's floor.

    .venv/bin/python -m bench.api [--clients 50] [--seconds 10] [--api-workers 2]
    .venv/bin/python -m bench.api --url http://127.0.0.1:8000 --password ...

Without `--url` it starts its own stack of real processes on free ports (a private Postgres from
the local binaries, the Temporal dev server, the worker and the API, as the chaos suite does),
seeds the demo institution, registers one member with one savings account through the API, and
then, with N keep-alive clients for T seconds each:
- `GET /health` (no auth, no database): the floor of this framework on this machine;
- `GET /v1/accounts/{n}` as a teller: the authenticated read (token, user and roles lookup,
  middleware, the account query, serialization), and the same with one client for its p50;
- `POST /v1/movements` deposits of 1.00 into that one account, each under its own
  Idempotency-Key: the hot-account write path (workflow start, posting, answer).
It ends with `ledger verify` and prints, as its last line,
`api reads_per_s=X reads_p99_ms=Y writes_per_s=Z writes_p99_ms=W ...`.

The load generator is a bare asyncio HTTP/1.1 client in this process (one connection per
client, no parsing beyond the status line and Content-Length), so it costs the 2-core machine
as little as possible of what the API needs. Run it alone: figures on a busy machine are ratios
at best.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.chaos.stack import Stack  # noqa: E402
from bench.cpu import cpu_seconds  # noqa: E402

TELLER = "teller1"
CURRENCY = "USD"


@dataclass
class Phase:
    """One phase's answers: latencies in seconds, by status."""

    name: str
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def ms(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def cpu_ms(self, name: str) -> float:
        return 1000 * self.cpu.get(name, 0.0) / len(self.latencies) if self.latencies else 0.0

    def line(self) -> str:
        cpu = " ".join(f"cpu_{n}={self.cpu_ms(n):.2f}ms" for n in sorted(self.cpu))
        return (
            f"{self.name}: {self.per_s:.0f}/s p50={self.ms(0.5):.1f}ms p95={self.ms(0.95):.1f}ms "
            f"p99={self.ms(0.99):.1f}ms n={len(self.latencies)} statuses={self.statuses} "
            f"(per answer: {cpu})"
        )


Request = Callable[[], bytes]


@dataclass
class Meters:
    """The process trees whose CPU each phase charges per answer (API, Postgres, worker, the
    Temporal dev server)."""

    roots: dict[str, int] = field(default_factory=dict)

    def read(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.roots.items()}


async def _one_client(host: str, port: int, request: Request, until: float, phase: Phase) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < until:
            started = time.perf_counter()
            writer.write(request())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            phase.latencies.append(time.perf_counter() - started)
            phase.statuses[status] = phase.statuses.get(status, 0) + 1
    finally:
        writer.close()


async def drive(
    url: str,
    name: str,
    request: Request,
    clients: int,
    seconds: float,
    meters: Meters | None = None,
) -> Phase:
    parts = urlsplit(url)
    phase = Phase(name)
    before = meters.read() if meters else {}
    started = time.monotonic()
    until = started + seconds
    await asyncio.gather(
        *(
            _one_client(parts.hostname or "127.0.0.1", parts.port or 80, request, until, phase)
            for _ in range(clients)
        )
    )
    phase.seconds = time.monotonic() - started
    if meters:
        after = meters.read()
        phase.cpu = {n: after[n] - before[n] for n in after}
    return phase


def get(host: str, path: str, token: str | None = None) -> Request:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    raw = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n".encode()
    return lambda: raw


def deposit(host: str, token: str, account: str) -> Request:
    body = json.dumps(
        {"kind": "deposit", "amount": "1.00", "currency": CURRENCY, "to_account": account}
    ).encode()

    def request() -> bytes:
        return (
            f"POST /v1/movements HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Idempotency-Key: {uuid.uuid4()}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    return request


async def prepare(url: str, password: str) -> tuple[str, str]:
    """A teller's token and a fresh member's savings account, through the API."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        login = await http.post("/v1/auth/token", data={"username": TELLER, "password": password})
        login.raise_for_status()
        token = login.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        member = await http.post(
            "/v1/members",
            json={
                "first_name": "Bench",
                "last_name": f"Reader {uuid.uuid4().hex[:6]}",
                "date_of_birth": "1990-01-01",
                "branch_code": "HQ",
            },
            headers=headers | {"Idempotency-Key": str(uuid.uuid4())},
        )
        member.raise_for_status()
        opened = await http.post(
            f"/v1/members/{member.json()['member_number']}/accounts",
            json={"kind": "savings", "currency": CURRENCY},
            headers=headers | {"Idempotency-Key": str(uuid.uuid4())},
        )
        opened.raise_for_status()
        return token, str(opened.json()["number"])


async def measure(
    url: str, password: str, clients: int, seconds: float, meters: Meters | None = None
) -> list[Phase]:
    token, account = await prepare(url, password)
    host = urlsplit(url).netloc
    read = get(host, f"/v1/accounts/{account}", token)
    await drive(url, "warm-up", read, clients, 2.0)
    phases = [
        await drive(url, "health", get(host, "/health"), clients, seconds, meters),
        await drive(url, "reads", read, clients, seconds, meters),
        await drive(url, "reads_one_client", read, 1, seconds, meters),
        await drive(url, "writes", deposit(host, token, account), clients, seconds, meters),
    ]
    return phases


def stack_pids(stack: Stack) -> dict[str, int]:
    pids = {
        name: service.proc.pid
        for name, service in stack.services.items()
        if name in ("api", "worker", "temporal") and service.proc is not None
    }
    if stack.postgres is not None:
        pids["postgres"] = stack.postgres.pid
    return pids


def report(phases: list[Phase], verified: str) -> None:
    by = {p.name: p for p in phases}
    for phase in phases:
        print(phase.line())
    health, reads, one, writes = by["health"], by["reads"], by["reads_one_client"], by["writes"]
    ratio = reads.per_s / health.per_s if health.per_s else 0.0
    print(
        f"api reads_per_s={reads.per_s:.0f} reads_p99_ms={reads.ms(0.99):.1f} "
        f"writes_per_s={writes.per_s:.1f} writes_p99_ms={writes.ms(0.99):.1f} "
        f"health_per_s={health.per_s:.0f} reads_to_health={ratio:.2f} "
        f"read_p50_one_client_ms={one.ms(0.5):.2f} "
        f"read_api_cpu_ms={reads.cpu_ms('api'):.2f} read_pg_cpu_ms={reads.cpu_ms('postgres'):.2f} "
        f"write_api_cpu_ms={writes.cpu_ms('api'):.2f} "
        f"write_worker_cpu_ms={writes.cpu_ms('worker'):.2f} "
        f"write_temporal_cpu_ms={writes.cpu_ms('temporal'):.2f} "
        f"write_pg_cpu_ms={writes.cpu_ms('postgres'):.2f} "
        f"errors={sum(n for p in phases for s, n in p.statuses.items() if s >= 400)} "
        f"verify={verified}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--url", help="a running stack's API (default: start a private one)")
    parser.add_argument(
        "--api-workers", type=int, default=2, help="API processes of the private stack"
    )
    parser.add_argument(
        "--password", default=f"{TELLER}-demo-pass", help=f"{TELLER}'s password (--url only)"
    )
    opts = parser.parse_args(argv)
    if opts.url:
        phases = asyncio.run(measure(opts.url, opts.password, opts.clients, opts.seconds))
        report(phases, "not-run")
        return 0
    with tempfile.TemporaryDirectory(prefix="bankflow-bench-api-") as work:
        stack = Stack(Path(work), api_workers=opts.api_workers)
        try:
            stack.start()
            meters = Meters(stack_pids(stack))
            phases = asyncio.run(
                measure(stack.api_url, opts.password, opts.clients, opts.seconds, meters)
            )
            ok, breached = stack.ledger_verify()
        finally:
            stack.stop()
    report(phases, "ok" if ok else "FAILED " + "; ".join(breached))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
