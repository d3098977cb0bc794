"""What telemetry costs a money movement: movements/s with telemetry off and on, in one run.

    .venv/bin/python bench/telemetry.py [--movements M] [--concurrency C] [--rounds R]

Both setups run MoneyMovement deposits (one post_movement activity each, as bench/ledger.py's
movements mode) on one local Temporal dev server, one throwaway database and identically
configured workers; only telemetry differs:
  off: BANKFLOW_METRICS_ENABLED=false (no activity metrics interceptor), no tracing, the
       default Temporal runtime (no SDK metrics);
  on:  the worker as production runs it: activity metrics interceptor, the product metrics
       server, the Temporal SDK's Prometheus metrics from the client's Runtime, and tracing on
       (Temporal's TracingInterceptor, SQLAlchemy spans) handed synchronously to an exporter
       that drops them (production batches them to OTLP off the request path, so this is an
       upper bound of the export's cost in this process, minus the network).
The ledger's own counters run in both (they are a list append at commit).
Rounds alternate off, on, off, on, ... so warm-up and the shared machine's drift fall on both;
each round has an untimed warm-up of C movements. It prints each round, the mean of each setup
and on/off. Figures depend on the machine (Postgres, the Temporal server and this process share
its cores): compare the ratio, from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import uuid
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path

_root = str(Path(__file__).resolve().parent.parent)
if _root not in sys.path:
    sys.path.insert(0, _root)

import httpx  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan  # noqa: E402
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities import metrics  # noqa: E402
from activities.db import in_transaction, make_engine, make_sessionmaker  # noqa: E402
from activities.ledger.chart import CASH, ensure_branch, ensure_chart  # noqa: E402
from activities.migrate import upgrade  # noqa: E402
from bench.kit import Sessions, closed_loop, new_account, run_workers  # noqa: E402
from bench.movements import RUN_LIMIT, deposit  # noqa: E402
from schemas import search_attributes, telemetry, temporal  # noqa: E402
from schemas.keyring import KeyRing  # noqa: E402
from schemas.movements import Stage  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from scripts.local_postgres import DEFAULT_URL, create_database, drop_database  # noqa: E402
from scripts.temporal_dev import ONE_PARTITION  # noqa: E402
from workflows.money_movement import MoneyMovementWorkflow  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Discard(SpanExporter):
    """Counts the spans it is handed and drops them."""

    spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


async def movements(
    client: Client, settings: Settings, sessions: Sessions, cash: int, m: int, c: int, tag: str
) -> float:
    accounts = [await new_account(sessions) for _ in range(c)]
    queue = f"bench-{tag}-{uuid.uuid4().hex[:6]}"
    failed: list[int] = []

    async def one(task: int, i: int) -> None:
        state = await client.execute_workflow(
            MoneyMovementWorkflow.run,
            deposit(i, cash, accounts[task]).model_copy(update={"movement_id": f"B{tag}{i:07d}"}),
            id=f"movement-B{tag}{i:07d}",
            task_queue=queue,
            execution_timeout=RUN_LIMIT,
        )
        if state.stage != Stage.COMPLETED:
            failed.append(i)

    async with AsyncExitStack() as stack:
        await run_workers(stack, client, settings, sessions, queue)
        await closed_loop("", c, c, lambda t, i: one(t, m + i))  # warm-up
        rate = await closed_loop(f"   {tag}", m, c, one)
    if failed:
        raise SystemExit(f"{len(failed)} movements did not complete")
    return rate


async def bench(url: str, m: int, c: int, rounds: int) -> int:
    keys = KeyRing.generate_entry("bench")
    off_settings = Settings(database_url=url, metrics_enabled=False, payload_keys=keys)
    on_settings = Settings(database_url=url, metrics_enabled=True, payload_keys=keys)
    env = await WorkflowEnvironment.start_local(
        dev_server_extra_args=ONE_PARTITION,
        data_converter=temporal.data_converter(off_settings),
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=search_attributes.ALL,
        ui=False,
        dev_server_log_level="error",
    )
    target = env.client.service_client.config.target_host
    off_engine = make_engine(off_settings, pool_size=max(10, c), pre_ping=False)
    off_sessions = make_sessionmaker(off_engine)
    off_client = await temporal.connect(off_settings, target=target)

    async def chart(session: AsyncSession) -> dict[str, int]:
        await ensure_branch(session, "HQ", "Head office", "UTC")
        return await ensure_chart(session, "USD")

    cash = (await in_transaction(off_sessions, chart))[CASH.number]

    discard = Discard()
    assert telemetry.install_tracing(on_settings, "bench", exporter=discard) is not None
    on_engine = make_engine(on_settings, pool_size=max(10, c), pre_ping=False)
    on_sessions = make_sessionmaker(on_engine)
    sdk_port, product_port = free_port(), free_port()
    on_client = await temporal.connect(
        on_settings, target=target, sdk_metrics=f"127.0.0.1:{sdk_port}"
    )
    stop_metrics = metrics.serve("127.0.0.1", product_port)
    results: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for r in range(rounds):
            print(f"round {r + 1}", flush=True)
            results["off"].append(
                await movements(off_client, off_settings, off_sessions, cash, m, c, f"off{r}")
            )
            results["on"].append(
                await movements(on_client, on_settings, on_sessions, cash, m, c, f"on{r}")
            )
        async with httpx.AsyncClient() as http:
            product = (await http.get(f"http://127.0.0.1:{product_port}/metrics")).text
            sdk = (await http.get(f"http://127.0.0.1:{sdk_port}/metrics")).text
    finally:
        stop_metrics()
        telemetry.shutdown_tracing()
        await off_engine.dispose()
        await on_engine.dispose()
        await env.shutdown()
    off, on = statistics.mean(results["off"]), statistics.mean(results["on"])
    print(f"scraped: product metrics {len(product)} bytes, SDK metrics {len(sdk)} bytes;")
    print(f"spans exported while on: {discard.spans}")
    print(f"movements_per_s telemetry off={off:.1f} on={on:.1f} on/off={on / off:.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="money movements/s with telemetry off and on")
    parser.add_argument("--movements", type=int, default=200, help="M per round and setup")
    parser.add_argument("--concurrency", type=int, default=8, help="C, movements in flight")
    parser.add_argument("--rounds", type=int, default=2, help="R rounds of off then on")
    args = parser.parse_args()
    server = Settings(database_url=DEFAULT_URL).sqlalchemy_url
    name = f"bankflow_bench_{uuid.uuid4().hex[:10]}"
    try:
        url = create_database(server, name)
        upgrade(url)
        return asyncio.run(bench(url, args.movements, args.concurrency, args.rounds))
    finally:
        drop_database(server, name)


if __name__ == "__main__":
    sys.exit(main())
