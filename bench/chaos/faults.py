"""Faults at random times, each followed by the harness's own restart of what it broke, and the
recovery figures measured from the clients' attempts.

Per fault:
- recovery_s: from the fault until the first request sent after it succeeded (2xx);
- inflight_s: from the fault until the last command that had a request outstanding at that
  moment got its definitive answer (the issue's "requests in flight answered in N s"); a command
  already waiting out an earlier fault between its retries is not counted again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

from bench.chaos.client import Answer, Api, Attempt
from bench.chaos.stack import Stack

KINDS = ("worker_kill", "pg_immediate", "pg_fast", "api_kill", "temporal_kill")


def actions(stack: Stack) -> dict[str, Callable[[], None]]:
    return {
        "worker_kill": stack.kill_worker,
        "pg_immediate": lambda: stack.restart_postgres("immediate"),
        "pg_fast": lambda: stack.restart_postgres("fast"),
        "api_kill": stack.kill_api,
        "temporal_kill": stack.kill_temporal,
    }


@dataclass
class Fault:
    kind: str
    at: float
    restored: float = 0.0  # when the harness had the component back
    recovery_s: float | None = None
    inflight_s: float = 0.0


def plan(rng: random.Random, per_kind: int, start: float, end: float) -> list[Fault]:
    """Each kind `per_kind` times, shuffled, one per equal slot of [start, end) at a random
    point of its first half, so every fault's recovery is seen before the next."""
    kinds = [kind for kind in KINDS for _ in range(per_kind)]
    rng.shuffle(kinds)
    slot = (end - start) / max(len(kinds), 1)
    return [
        Fault(kind, start + i * slot + rng.uniform(0, slot / 2)) for i, kind in enumerate(kinds)
    ]


async def inject(stack: Stack, api: Api, faults: list[Fault]) -> None:
    table = actions(stack)
    for fault in faults:
        await asyncio.sleep(max(0.0, fault.at - api.now()))
        fault.at = api.now()
        await asyncio.to_thread(table[fault.kind])
        fault.restored = api.now()
        print(
            f"chaos: fault {fault.kind} at {fault.at:6.1f} s; restarted in "
            f"{fault.restored - fault.at:4.1f} s",
            flush=True,
        )


def measure(faults: list[Fault], attempts: list[Attempt], answers: list[Answer]) -> None:
    for fault in faults:
        after = [a.ended for a in attempts if a.started >= fault.at and a.status and a.status < 300]
        fault.recovery_s = min(after) - fault.at if after else None
        inflight = [
            a.answered for a in answers if any(t.started <= fault.at <= t.ended for t in a.attempts)
        ]
        fault.inflight_s = max(inflight, default=fault.at) - fault.at
