"""The private Postgres of the dev launcher, the test harness and the chaos suite: a cluster that
was stopped starts again from the same data directory (a restart, or the next `make run`)."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg

from scripts.local_postgres import start_private


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_stopped_private_cluster_starts_again_from_its_data_dir(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "pg" / "data"
    for _ in range(2):
        url, proc = start_private(data, port)
        try:
            admin = url.replace("postgresql+psycopg://", "postgresql://").replace(
                "/bankflow", "/postgres"
            )
            with psycopg.connect(admin) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            proc.terminate()
            proc.wait(30)
