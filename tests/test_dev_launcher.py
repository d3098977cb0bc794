"""The dev launcher's building blocks (scripts/dev.py), run for real: a Temporal dev server started
from the launcher's own command line, the Postgres choice, and the stop escalation."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.common import SearchAttributeKey

from schemas import search_attributes
from scripts import dev, local_postgres


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_type(key: SearchAttributeKey[Any]) -> str:
    """The CLI spelling of a key's declared type: KEYWORD_LIST -> KeywordList."""
    return "".join(part.title() for part in key.indexed_value_type.name.split("_"))


def test_temporal_command_persists_to_data_dir_and_registers_search_attributes(
    tmp_path: Path,
) -> None:
    db_file = tmp_path / ".data" / "temporal.db"
    cmd = dev.temporal_command(dev.venv_tool("temporal"), db_file)

    assert cmd[1:3] == ["server", "start-dev"]
    assert cmd[cmd.index("--db-filename") + 1] == str(db_file)
    assert cmd[cmd.index("--port") + 1] == "7233"
    assert cmd[cmd.index("--ui-port") + 1] == "8233"
    assert cmd[cmd.index("--ip") + 1] == "127.0.0.1"
    assert "--ui-disable-news-fetch" in cmd  # the bundled CLI supports it
    registered = {cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--search-attribute"}
    assert registered == {f"{key.name}={cli_type(key)}" for key in search_attributes.ALL}


def test_search_attribute_types_follow_the_declared_keys() -> None:
    expected = {key.name: cli_type(key) for key in search_attributes.ALL}
    assert dev.search_attribute_types() == expected
    assert expected["BankflowAmountMinor"] == "Int"


@pytest.fixture
def temporal_server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A dev server started from the launcher's command line on free ports."""
    binary = dev.venv_tool("temporal")
    port, ui_port = free_port(), free_port()
    cmd = dev.temporal_command(binary, tmp_path / "temporal.db", port=port, ui_port=ui_port)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    child = dev.Child("temporal", proc, tmp_path / "temporal.log")
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not dev.temporal_healthy(binary, address):
        assert proc.poll() is None, "temporal dev server exited during start-up"
        assert time.monotonic() < deadline, "temporal dev server not healthy after 30s"
        time.sleep(0.2)
    yield address, ui_port
    child.stop()
    assert proc.returncode is not None


def test_dev_server_serves_ui_and_knows_our_search_attributes(
    temporal_server: tuple[str, int],
) -> None:
    address, ui_port = temporal_server
    binary = dev.venv_tool("temporal")
    deadline = time.monotonic() + 30
    while not dev.http_ok(f"http://127.0.0.1:{ui_port}/"):
        assert time.monotonic() < deadline, "Temporal UI did not answer"
        time.sleep(0.2)
    code, listing = dev._cli(binary, "operator", "search-attribute", "list", "--address", address)
    assert code == 0, listing
    for key in search_attributes.ALL:
        assert key.name in listing


def test_registering_on_an_existing_server_is_idempotent_but_rejects_a_type_clash(
    temporal_server: tuple[str, int],
) -> None:
    address, _ = temporal_server
    binary = dev.venv_tool("temporal")
    dev.register_search_attributes(binary, address)  # already there from start-dev flags
    dev.register_search_attributes(binary, address)

    code, output = dev._cli(
        binary, "operator", "search-attribute", "create", "--address", address,
        "--name", "BankflowStage", "--type", "Int",
    )  # fmt: skip
    assert code != 0 and "different type" in output
    # The launcher's own path must surface such a clash, not swallow it as "already exists".
    with pytest.raises(dev.LaunchError, match="BankflowAmountMinor"):
        dev.register_search_attributes(binary, address, {"BankflowAmountMinor": "Keyword"})


def test_configured_url_precedence_matches_settings() -> None:
    assert dev.configured_url({}) == local_postgres.DEFAULT_URL
    assert dev.configured_url({"DATABASE_URL": "postgresql://a/x"}) == "postgresql://a/x"
    both = {"DATABASE_URL": "postgresql://a/x", "BANKFLOW_DATABASE_URL": "postgresql://b/y"}
    assert dev.configured_url(both) == "postgresql://b/y"


def test_reachable_configured_server_is_used_and_database_created(pg_server: str) -> None:
    name = f"bankflow_dev_{uuid.uuid4().hex[:8]}"
    configured = local_postgres.with_database(pg_server, name)
    plan = dev.plan_database({"BANKFLOW_DATABASE_URL": configured})
    assert plan == dev.DatabasePlan(configured, private=False, database=name)

    url, proc = dev.prepare_database(plan, Path("/nonexistent"))
    try:
        assert proc is None  # nothing started: the configured server is used as is
        assert url == configured
        plain = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
    finally:
        local_postgres.drop_database(pg_server, name)


def test_unreachable_configured_server_chooses_a_private_one() -> None:
    configured = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/ledger"
    plan = dev.plan_database({"DATABASE_URL": configured})
    assert plan.private is True
    assert plan.database == "ledger"


def test_private_server_starts_under_data_dir_and_stops_on_sigint(tmp_path: Path) -> None:
    plan = dev.DatabasePlan("postgresql://127.0.0.1:1/bankflow", private=True, database="bankflow")
    port = free_port()
    url, proc = dev.prepare_database(plan, tmp_path / "postgres", port=port)
    assert proc is not None
    child = dev.Child("postgres", proc, tmp_path / "postgres.log", signal.SIGINT, 30.0)
    try:
        assert (tmp_path / "postgres" / "PG_VERSION").exists()
        assert url == f"postgresql+psycopg://postgres@127.0.0.1:{port}/bankflow"
        with psycopg.connect(url.replace("+psycopg", "")) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("bankflow",)
    finally:
        child.stop()
    assert proc.returncode is not None
    assert not local_postgres.reachable(url)


def test_child_that_ignores_sigterm_is_killed_after_its_grace(tmp_path: Path) -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", stubborn], start_new_session=True)
    time.sleep(0.5)  # let it install the handler
    child = dev.Child("stubborn", proc, tmp_path / "x.log", grace=1.0)
    started = time.monotonic()
    child.stop()
    assert proc.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # the whole group is gone


def test_child_death_is_reported_with_its_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("booting\nImportError: no module named nope\n")
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], start_new_session=True)
    proc.wait()
    launcher = dev.Launcher()
    launcher.children.append(dev.Child("worker", proc, log))
    with pytest.raises(dev.LaunchError, match=r"worker exited \(3\)(.|\n)*ImportError"):
        launcher.check_alive()
