"""`python -m api.serve`: the API under uvicorn, one or more processes on one port.

Why not `uvicorn --workers N` itself: with more than one process uvicorn binds the listening
socket as `socket.socket(family)`, whose protocol number is 0, and asyncio sets TCP_NODELAY only
on sockets whose protocol is IPPROTO_TCP. Every answer is written in two parts (head, body), so
without TCP_NODELAY the body waits for the client's delayed ACK: about 40 ms per request, seen
as a 0.6 ms `/health` becoming 44 ms with two processes. Here the listening socket gets
TCP_NODELAY, which Linux copies to every connection it accepts.

With several processes, each keeps its Prometheus metrics in a shared directory
(PROMETHEUS_MULTIPROC_DIR, made fresh for this server and removed at exit), so `/metrics` shows
the sum whichever process answers the scrape.

Proxy headers are never believed by uvicorn: the app believes X-Forwarded-For only from
BANKFLOW_TRUSTED_PROXIES (api.app). Processes: `--workers`, else WEB_CONCURRENCY, else 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile

import uvicorn
from uvicorn.supervisors import Multiprocess

APP = "api.app:app"


def config(argv: list[str] | None = None) -> uvicorn.Config:
    parser = argparse.ArgumentParser(prog="python -m api.serve", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", 1)))
    # Off unless asked: the app writes its own access line (api/telemetry.py) by route template,
    # while uvicorn's shows raw paths, which carry member numbers.
    parser.add_argument("--access-log", dest="access_log", action="store_true", default=False)
    parser.add_argument("--no-access-log", dest="access_log", action="store_false")
    opts = parser.parse_args(argv)
    return uvicorn.Config(
        APP,
        host=opts.host,
        port=opts.port,
        workers=max(1, opts.workers),
        proxy_headers=False,
        access_log=opts.access_log,
    )


def listening_socket(cfg: uvicorn.Config) -> socket.socket:
    """uvicorn's socket for several processes, with TCP_NODELAY for every accepted connection."""
    sock = cfg.bind_socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def main(argv: list[str] | None = None) -> int:
    cfg = config(argv)
    if cfg.workers == 1:
        server = uvicorn.Server(cfg)
        server.run()
        return 0 if server.started else 3  # uvicorn's own start-up failure code
    metrics = tempfile.mkdtemp(prefix="bankflow-api-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics  # the processes inherit it
    try:
        Multiprocess(cfg, sockets=[listening_socket(cfg)]).run()
    finally:
        shutil.rmtree(metrics, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
