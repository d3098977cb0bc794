"""One chaos run: stack up, set-up, workload under faults, drain, checks, report."""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.chaos import faults as fault_plan
from bench.chaos import processes, report
from bench.chaos.books import Books, Verdict, compare_accounts, compare_loans, snapshot
from bench.chaos.client import Api, Undetermined
from bench.chaos.setup import fund, login_staff, probe_account, savings_before, verified_member
from bench.chaos.stack import Stack, StackError
from bench.chaos.workload import Client, settle_movement

PROBE_EVERY_S = 1.0  # a probe deposit starts this often, whether or not earlier ones are answered
WARM_UP_S = 8.0  # the first fault waits for the clients to be under way
QUIET_END_S = 12.0  # and the last one leaves time to see recovery within the window


@dataclass(frozen=True)
class Options:
    duration: float = 210.0
    clients: int = 4
    seed: int | None = None
    faults: int = 3  # per kind
    keep: bool = False
    request_bound: float = 600.0  # a command without a definitive answer by then: undetermined
    settle: float = 120.0  # processes still busy after the drain get this long to settle


def last_month() -> str:
    return f"{date.today().replace(day=1) - timedelta(days=1):%Y-%m}"


@dataclass
class MonthEnd:
    """`bankflow month-end run` for last month, retried until it exits 0, as an operator would."""

    stack: Stack
    api: Api
    period: str = field(default_factory=last_month)
    tries: int = 0
    took_s: float | None = None
    summary: dict[str, Any] | None = None

    async def run(self) -> None:
        first = self.api.now()
        while True:
            self.tries += 1
            done = await asyncio.to_thread(
                self.stack.cli, "month-end", "run", "--period", self.period
            )
            if done.returncode == 0:
                break
            if self.api.now() - first > self.api.request_bound:
                raise Undetermined(f"month-end {self.period}: {done.stderr.strip()[-300:]}")
            await asyncio.sleep(1)
        self.took_s = self.api.now() - first
        self.summary = (
            await self.api.read("finance1", f"/v1/reports/month-end/{self.period}")
        ).body
        print(
            f"chaos: month-end {self.period} done in {self.took_s:.1f} s ({self.tries} tries)",
            flush=True,
        )

    def net_minor(self) -> int:
        totals = self.summary["totals"] if self.summary else []
        return sum(int(t["interest_minor"]) - int(t["tax_minor"]) for t in totals)


async def probe(api: Api, books: Books, account: str, until: float, verdict: Verdict) -> None:
    """A 1.00 deposit every second, each on its own: the recovery figures see the first request
    that succeeds after a fault even while every client waits out a blocked retry."""

    async def deposit() -> None:
        body = {"kind": "deposit", "amount": "1.00", "currency": "USD", "to_account": account}
        try:
            answer = await api.command("probe deposit", "teller2", "/v1/movements", body)
            if answer.status not in (201, 202):
                verdict.add("mismatched", f"probe deposit answered {answer.status} {answer.body}")
                return
            # a 202 "posting" was started but not yet answered (no worker): follow it
            state = await settle_movement(api, answer.body)
        except Undetermined as exc:
            verdict.add("mismatched", f"undetermined: {exc}")
            return
        if state["stage"] == "completed":
            books.post(state["journal_id"], {account: 100})

    running: set[asyncio.Task[None]] = set()
    while api.now() < until:
        running.add(asyncio.create_task(deposit()))
        await asyncio.sleep(PROBE_EVERY_S)
    await asyncio.gather(*running)


async def drive(client: Client, until: float, extra: MonthEnd | None, verdict: Verdict) -> None:
    try:
        await client.run(until, extra.run if extra else None)
    except Undetermined as exc:  # this client's books are unsure from here: stop it, say so
        verdict.add("mismatched", f"undetermined: {exc}")


async def run(opts: Options) -> int:
    rng = random.Random(opts.seed)
    workdir = Path(tempfile.mkdtemp(prefix="bankflow-chaos-"))
    stack = Stack(workdir, keep=opts.keep)
    api: Api | None = None
    injector: asyncio.Task[None] | None = None
    try:
        began = time.monotonic()
        await asyncio.to_thread(stack.start)
        print(
            f"chaos: stack up in {time.monotonic() - began:.1f} s: postgres 127.0.0.1:{stack.pg_port}, "
            f"temporal {stack.temporal_address}, api {stack.api_url}; logs in {stack.logs}",
            flush=True,
        )
        api = Api(stack.api_url, opts.request_bound)
        await login_staff(api)
        tag = f"{rng.randrange(16**6):06x}"
        members = [await verified_member(api, tag, i) for i in range(opts.clients)]
        books = Books()
        probed = await probe_account(api, tag)
        existing = await savings_before(api, members[0].accounts[0])
        await snapshot(api, books, [*existing, probed, *(a for m in members for a in m.accounts)])
        for i, member in enumerate(members):
            await fund(api, books, member, i)
        print(
            f"chaos: {opts.clients} clients with verified members and funded accounts; "
            f"{len(existing)} demo savings accounts watched",
            flush=True,
        )

        start = api.now()
        until = start + opts.duration
        faults = fault_plan.plan(rng, opts.faults, start + WARM_UP_S, until - QUIET_END_S)
        spacing = (opts.duration - WARM_UP_S - QUIET_END_S) / max(len(faults), 1)
        print(
            f"chaos: {opts.duration:.0f} s of workload, {len(faults)} faults, one per "
            f"{spacing:.0f} s slot",
            flush=True,
        )
        month_end = MonthEnd(stack, api)
        verdict = Verdict()
        clients = [
            Client(i, api, books, m, members[(i + 1) % len(members)], random.Random(rng.random()))
            for i, m in enumerate(members)
        ]
        injector = asyncio.create_task(fault_plan.inject(stack, api, faults))
        await asyncio.gather(
            probe(api, books, probed, until, verdict),
            *(drive(c, until, month_end if c.index == 0 else None, verdict) for c in clients),
        )
        await injector
        if month_end.summary is None:  # client 0 was held up past the window
            await month_end.run()
        drained = api.now()
        print(f"chaos: workload stopped at {until:.1f} s, drained at {drained:.1f} s", flush=True)
        fault_plan.measure(faults, api.attempts, api.answers)

        interest = await compare_accounts(
            api, books, verdict, f"month-end:{month_end.period}:", set(existing)
        )
        if interest != month_end.net_minor():
            verdict.add(
                "lost" if interest < month_end.net_minor() else "duplicated",
                f"month-end interest on the accounts {interest}, summary {month_end.net_minor()}",
            )
        await compare_loans(api, books, verdict)
        for client in clients:
            for finding in client.unexpected:
                verdict.add("mismatched", f"unexpected answer: {finding}")
        procs = await processes.check(stack.temporal_address, books.loans, opts.settle)
        for why in procs.wrong:
            verdict.add("mismatched", f"process: {why}")
        verified, breaches = await asyncio.to_thread(stack.ledger_verify)
        posted_before_500 = await report.posted_before_500(api)
        return report.print_report(
            api, faults, verdict, procs, verified, breaches, month_end.summary, posted_before_500
        )
    finally:
        if injector is not None and not injector.done():  # interrupted: no fault after stop
            injector.cancel()
            with contextlib.suppress(asyncio.CancelledError, StackError):
                await injector
        if api is not None:
            await api.close()
        await asyncio.to_thread(stack.stop)
        if opts.keep:
            print(f"chaos: kept {workdir} (data, logs)", flush=True)
