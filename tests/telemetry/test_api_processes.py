"""Several API processes behind one port: `/metrics` adds up every process's requests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COUNT = (
    "from activities.metrics import HTTP_REQUESTS; "
    "HTTP_REQUESTS.labels(method='GET', route='/health', status='200').inc({n})"
)
READ = (
    "from prometheus_client import generate_latest; from api.telemetry import registry; "
    "print(generate_latest(registry()).decode())"
)


def run(code: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_metrics_of_every_api_process_add_up(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    run(COUNT.format(n=2), env)  # one API process
    run(COUNT.format(n=3), env)  # another
    shown = run(READ, env)  # the one the scrape reached
    line = 'bankflow_http_requests_total{method="GET",route="/health",status="200"} 5.0'
    assert line in shown.splitlines()
