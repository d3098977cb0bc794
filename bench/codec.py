"""What the payload codec costs: payload sizes and a movement's end-to-end time, with and without
encryption, measured in one run on a throwaway database and one local Temporal dev server.

    .venv/bin/python bench/codec.py [--movements M]

Figures:
  a. payload bytes of typical payloads (a movement's input, a disbursement's schedule with its
     installments, a KYC check report) as the server stores them: the pydantic JSON alone, and
     encrypted (AES-256-GCM, zlib first above 512 bytes); and the codec's own time per payload;
  b. a MoneyMovement deposit's end-to-end time (start to result, one at a time), M runs with the
     plain converter and M with the codec, interleaved in pairs so that both see the same machine
     load: mean and median of each, and the ratio.

Absolute numbers depend on the machine (Postgres, Temporal and this process share its cores);
read the ratio from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

from temporalio import workflow

if not workflow.unsafe.in_sandbox():
    _root = str(Path(__file__).resolve().parent.parent)
    if _root not in sys.path:
        sys.path.insert(0, _root)

with workflow.unsafe.imports_passed_through():
    from sqlalchemy.ext.asyncio import AsyncSession
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from activities.db import in_transaction, make_engine, make_sessionmaker
    from activities.ledger.chart import CASH, ensure_branch, ensure_chart
    from activities.migrate import upgrade
    from bench.kit import Sessions, new_account, run_workers
    from bench.movements import RUN_LIMIT, deposit
    from schemas import search_attributes, temporal
    from schemas.keyring import KeyRing
    from schemas.kyc import CheckReport, CheckResult
    from schemas.movements import Stage
    from schemas.payload_codec import EncryptionCodec
    from schemas.settings import Settings
    from scripts.local_postgres import DEFAULT_URL, create_database, drop_database
    from scripts.temporal_dev import ONE_PARTITION
    from workflows.money_movement import MoneyMovementWorkflow


def samples(cash: int, account: int) -> dict[str, object]:
    installments = [
        {"number": n, "due_on": f"2027-{n:02d}-01", "total": "255.00", "principal": "230.00"}
        for n in range(1, 13)
    ]
    checks = [
        CheckResult(name=f"id_format:passport-{n}", passed=True, reason="6 to 9 letters or digits")
        for n in range(8)
    ]
    return {
        "movement input": deposit(1, cash, account),
        "disbursement schedule (12 installments)": {
            "loan_number": "LN000123",
            "principal": "3000.00",
            "installments": installments,
        },
        "KYC check report": CheckReport(
            checks=checks,
            risk="low",
            risk_reasons=[],
            watchlist_hit=False,
            underage=False,
            missing=[],
        ),
    }


async def sizes(settings: Settings, cash: int, account: int) -> None:
    plain, sealed = pydantic_data_converter, temporal.data_converter(settings)
    codec = EncryptionCodec(settings.payload_keys)
    for name, value in samples(cash, account).items():
        [p] = await plain.encode([value])
        [s] = await sealed.encode([value])
        rounds = 2000
        started = time.perf_counter()
        for _ in range(rounds):
            await codec.decode(await codec.encode([p]))
        each_us = (time.perf_counter() - started) / rounds * 1e6
        print(
            f"a. {name}: plain {p.ByteSize()} B, encrypted {s.ByteSize()} B "
            f"(x{s.ByteSize() / p.ByteSize():.2f}, compressed: "
            f"{'yes' if 'compression' in s.metadata else 'no'}); "
            f"encode+decode {each_us:.0f} us",
            flush=True,
        )


async def movements(
    clients: dict[str, Client], settings: Settings, sessions: Sessions, cash: int, m: int
) -> dict[str, list[float]]:
    account = await new_account(sessions)
    queues = {name: f"bench-codec-{name}-{uuid.uuid4().hex[:6]}" for name in clients}
    times: dict[str, list[float]] = {name: [] for name in clients}
    async with AsyncExitStack() as stack:
        for name, client in clients.items():
            await run_workers(stack, client, settings, sessions, queues[name])
        for i in range(m + 5):  # the first 5 pairs warm up (sandbox imports), untimed
            for name, client in clients.items():
                started = time.perf_counter()
                state = await client.execute_workflow(
                    MoneyMovementWorkflow.run,
                    deposit(i, cash, account),
                    id=f"movement-BENCH-{name}-{i:05d}-{uuid.uuid4().hex[:4]}",
                    task_queue=queues[name],
                    execution_timeout=RUN_LIMIT,
                )
                assert state.stage == Stage.COMPLETED, state
                if i >= 5:
                    times[name].append(time.perf_counter() - started)
    return times


async def bench(url: str, m: int) -> int:
    settings = Settings(database_url=url, payload_keys=KeyRing.generate_entry("bench"))
    engine = make_engine(settings, pool_size=10, pre_ping=False)  # as worker.py
    sessions = make_sessionmaker(engine)

    async def chart(session: AsyncSession) -> dict[str, int]:
        await ensure_branch(session, "HQ", "Head office", "UTC")
        return await ensure_chart(session, "USD")

    cash = (await in_transaction(sessions, chart))[CASH.number]
    await sizes(settings, cash, await new_account(sessions))
    env = await WorkflowEnvironment.start_local(
        dev_server_extra_args=ONE_PARTITION,
        data_converter=temporal.data_converter(settings),
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=search_attributes.ALL,
        ui=False,
        dev_server_log_level="error",
    )
    try:
        target = env.client.service_client.config.target_host
        plain = await Client.connect(target, data_converter=pydantic_data_converter)
        clients = {"plain": plain, "encrypted": env.client}
        times = await movements(clients, settings, sessions, cash, m)
    finally:
        await env.shutdown()
        await engine.dispose()
    for name, series in times.items():
        print(
            f"b. movement end-to-end, {name}: mean {1000 * statistics.mean(series):.1f} ms, "
            f"median {1000 * statistics.median(series):.1f} ms over {len(series)}"
        )
    ratio = statistics.median(times["encrypted"]) / statistics.median(times["plain"])
    print(f"codec movement_median_ratio encrypted/plain = {ratio:.3f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="payload codec: sizes and movement latency")
    parser.add_argument("--movements", type=int, default=100, help="M, per converter")
    args = parser.parse_args()
    name = f"bankflow_bench_codec_{uuid.uuid4().hex[:8]}"
    url = create_database(DEFAULT_URL, name)
    try:
        upgrade(url)
        return asyncio.run(bench(url, args.movements))
    finally:
        drop_database(DEFAULT_URL, name)


if __name__ == "__main__":
    raise SystemExit(main())
