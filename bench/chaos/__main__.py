"""The chaos suite: a mixed banking workload on a stack of real processes while the harness
kills and restarts them, then proof that no money was lost, duplicated or misbooked.

    .venv/bin/python -m bench.chaos [--duration 210] [--clients 4] [--faults 3] [--seed N] [--keep]

It starts its own private Postgres, Temporal dev server, worker and API on free loopback ports,
drives several concurrent clients (deposits, withdrawals above and below the approval threshold
with their decisions, transfers, reversals, loans through guarantor consent and approval,
disbursement to savings, repayments and their reversal, one month-end run), each command retried
under its Idempotency-Key until it has a definitive answer, and injects at random times: worker
SIGKILL, Postgres immediate and fast restarts, API SIGKILL, Temporal dev server SIGKILL; the
harness restarts each itself. Then it compares the product with its own books and prints the
recovery time of each fault. The last line reads

    chaos requests=N faults=F lost=0 duplicated=0 mismatched=0 after500=0 blocked_max_s=X verify=ok

Exit status 0 when nothing was lost, duplicated or mismatched and `bankflow ledger verify` passed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

_root = str(Path(__file__).resolve().parents[2])
if _root not in sys.path:
    sys.path.insert(0, _root)

from bench.chaos.suite import Options, run  # noqa: E402


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=float, default=Options.duration, help="workload seconds")
    parser.add_argument(
        "--clients", type=int, default=Options.clients, help="concurrent clients (>= 2)"
    )
    parser.add_argument("--faults", type=int, default=Options.faults, help="faults of each kind")
    parser.add_argument("--seed", type=int, default=None, help="random seed (faults, workload)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    args = parser.parse_args(argv)
    if args.clients < 2:
        parser.error("--clients must be at least 2: each client's loans are guaranteed by the next")
    return Options(args.duration, args.clients, args.seed, args.faults, args.keep)


async def main(opts: Options) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run(opts)


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(parse())))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("chaos: interrupted; everything it started is stopped", file=sys.stderr)
        sys.exit(130)
