"""The dev launcher's building blocks (scripts/dev.py, scripts/supervisor.py), run for real: a
Temporal dev server started from the launcher's own command line, the Postgres choice and its two
roles, the stop escalation, restarts of dead children with backoff, Temporal's state kept per
database, and the signing keys generated once under .data/."""

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

import httpx
import psycopg
import pytest
from temporalio.common import SearchAttributeKey

from schemas import search_attributes
from schemas.keyring import KeyRing
from schemas.settings import Settings
from scripts import dev, local_postgres, temporal_dev
from scripts.supervisor import Child, Supervisor, spawn


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
    cmd = temporal_dev.temporal_command(dev.venv_tool("temporal"), db_file)

    assert cmd[1:3] == ["server", "start-dev"]
    assert cmd[cmd.index("--db-filename") + 1] == str(db_file)
    assert cmd[cmd.index("--port") + 1] == "7233"
    assert cmd[cmd.index("--ui-port") + 1] == "8233"
    assert cmd[cmd.index("--ip") + 1] == "127.0.0.1"
    assert "--ui-disable-news-fetch" in cmd  # the bundled CLI supports it
    assert "--ui-codec-endpoint" not in cmd
    with_codec = temporal_dev.temporal_command(
        dev.venv_tool("temporal"), db_file, codec_endpoint=dev.CODEC_ENDPOINT
    )
    assert with_codec[with_codec.index("--ui-codec-endpoint") + 1] == "http://127.0.0.1:8000/codec"
    registered = {cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--search-attribute"}
    assert registered == {f"{key.name}={cli_type(key)}" for key in search_attributes.ALL}


def test_search_attribute_types_follow_the_declared_keys() -> None:
    expected = {key.name: cli_type(key) for key in search_attributes.ALL}
    assert temporal_dev.search_attribute_types() == expected
    assert expected["BankflowAmountMinor"] == "Int"


@pytest.fixture
def temporal_server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A dev server started from the launcher's command line on free ports."""
    binary = dev.venv_tool("temporal")
    port, ui_port = free_port(), free_port()
    cmd = temporal_dev.temporal_command(
        binary,
        tmp_path / "temporal.db",
        port=port,
        ui_port=ui_port,
        codec_endpoint=dev.CODEC_ENDPOINT,
    )
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    child = Child("temporal", proc, tmp_path / "temporal.log")
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not temporal_dev.temporal_healthy(binary, address):
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
    code, listing = temporal_dev._cli(
        binary, "operator", "search-attribute", "list", "--address", address
    )
    assert code == 0, listing
    for key in search_attributes.ALL:
        assert key.name in listing
    # what the UI's page reads at start-up: it decodes through the API's codec
    settings = httpx.get(f"http://127.0.0.1:{ui_port}/api/v1/settings", timeout=10).json()
    assert settings["Codec"]["Endpoint"] == "http://127.0.0.1:8000/codec", settings["Codec"]


def test_registering_on_an_existing_server_is_idempotent_but_rejects_a_type_clash(
    temporal_server: tuple[str, int],
) -> None:
    address, _ = temporal_server
    binary = dev.venv_tool("temporal")
    temporal_dev.register_search_attributes(binary, address)  # already there from start-dev flags
    temporal_dev.register_search_attributes(binary, address)

    code, output = temporal_dev._cli(
        binary, "operator", "search-attribute", "create", "--address", address,
        "--name", "BankflowStage", "--type", "Int",
    )  # fmt: skip
    assert code != 0 and "different type" in output
    # The launcher's own path must surface such a clash, not swallow it as "already exists".
    with pytest.raises(temporal_dev.TemporalSetupError, match="BankflowAmountMinor"):
        temporal_dev.register_search_attributes(binary, address, {"BankflowAmountMinor": "Keyword"})


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

    prepared = dev.prepare_database(plan, Path("/nonexistent"))
    try:
        assert prepared.server is None  # nothing started: the configured server is used as is
        database = prepared.database
        assert database.owner_url == local_postgres.with_user(configured, f"{name}_owner")
        assert database.runtime_url == local_postgres.with_user(configured, f"{name}_app")
        for url, role in (
            (database.owner_url, database.owner),
            (database.runtime_url, database.runtime),
        ):
            with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
                assert conn.execute("SELECT current_database(), current_user").fetchone() == (
                    name,
                    role,
                )
        # again, as at every `make run`: nothing to create, nothing fails
        assert dev.prepare_database(plan, Path("/nonexistent")).database == database
    finally:
        local_postgres.drop_app_database(pg_server, name)


def test_unreachable_configured_server_chooses_a_private_one() -> None:
    configured = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/ledger"
    plan = dev.plan_database({"DATABASE_URL": configured})
    assert plan.private is True
    assert plan.database == "ledger"


def test_private_server_starts_under_data_dir_and_stops_on_sigint(tmp_path: Path) -> None:
    plan = dev.DatabasePlan("postgresql://127.0.0.1:1/bankflow", private=True, database="bankflow")
    port = free_port()
    prepared = dev.prepare_database(plan, tmp_path / "postgres", port=port)
    proc = prepared.server
    assert proc is not None
    child = Child("postgres", proc, tmp_path / "postgres.log", signal.SIGINT, 30.0)
    url = prepared.database.runtime_url
    try:
        assert (tmp_path / "postgres" / "PG_VERSION").exists()
        assert url == f"postgresql+psycopg://bankflow_app@127.0.0.1:{port}/bankflow"
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
    child = Child("stubborn", proc, tmp_path / "x.log", grace=1.0)
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
    launcher.children.append(Child("worker", proc, log))
    with pytest.raises(dev.LaunchError, match=r"worker exited \(3\)(.|\n)*ImportError"):
        launcher.check_alive()


SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def tend_until(supervisor: Supervisor, children: list[Child], done: Any) -> None:
    deadline = time.monotonic() + 60
    while not done():
        assert time.monotonic() < deadline, "the supervisor did not get there"
        supervisor.tend(children)
        time.sleep(0.05)


def test_a_killed_child_is_restarted_with_backoff_and_the_rest_keep_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    supervisor = Supervisor(tmp_path / "launcher.log", backoff_base=0.2)
    worker = spawn_child("worker", SLEEPER, tmp_path)
    api = spawn_child("api", SLEEPER, tmp_path)
    children = [worker, api]
    api_pid = api.proc.pid
    try:
        for round_, delay in ((1, "0.2s"), (2, "0.4s")):
            first = worker.proc
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            tend_until(supervisor, children, lambda w=first: worker.proc is not w)
            assert worker.proc.poll() is None  # running again
            lines = (tmp_path / "launcher.log").read_text().splitlines()
            assert lines[-2].endswith(f"worker was killed by SIGKILL; restarting in {delay}")
            assert (
                f"worker restarted (pid {worker.proc.pid}, restart {round_} in a row)" in lines[-1]
            )
        assert api.proc.pid == api_pid and api.proc.poll() is None  # never touched
        out = capsys.readouterr().out
        assert "launcher: worker was killed by SIGKILL; restarting in 0.2s" in out
    finally:
        for child in children:
            child.stop()


def spawn_child(name: str, cmd: list[str], logs: Path) -> Child:
    return spawn(name, cmd, os.environ, logs, grace=2.0)


def test_a_child_that_keeps_dying_waits_longer_each_time_up_to_the_cap(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "launcher.log", backoff_base=0.05, backoff_max=0.2)
    log = tmp_path / "launcher.log"
    crasher = spawn_child("worker", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path)

    def restarts() -> int:
        return log.read_text().count("restarted") if log.exists() else 0

    tend_until(supervisor, [crasher], lambda: restarts() >= 4)
    delays = [
        line.rsplit(" ", 1)[1] for line in log.read_text().splitlines() if "restarting in" in line
    ]
    assert delays[:4] == ["0.05s", "0.1s", "0.2s", "0.2s"]
    assert "worker exited (3)" in log.read_text()


def test_a_killed_private_postgres_is_restarted_on_its_data(tmp_path: Path) -> None:
    """Postgres too, when we started it: the API and worker reconnect by themselves."""
    port = free_port()
    data_dir = tmp_path / "postgres"
    url, proc = local_postgres.start_private(data_dir, port)
    child = Child(
        "postgres", proc, tmp_path / "postgres.log", signal.SIGINT, 30.0,
        launch=lambda: local_postgres.start_private(data_dir, port)[1],
    )  # fmt: skip
    local_postgres.create_database(url, "kept")
    supervisor = Supervisor(tmp_path / "launcher.log", backoff_base=0.2)
    try:
        # The postmaster itself: as root, `proc` is the runuser wrapper, and killing only that
        # left the server running (the "restart" then found it still answering, and it outlived
        # the test). The wrapper exits when its server dies, as under `make run`.
        postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGKILL)
        proc.wait(30)
        tend_until(supervisor, [child], lambda: child.proc is not proc)
        assert local_postgres.reachable(url)
        with psycopg.connect(
            local_postgres.with_database(url, "kept").replace("+psycopg", "")
        ) as c:
            assert c.execute("SELECT current_database()").fetchone() == ("kept",)
        new_postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
        assert new_postmaster != postmaster
    finally:
        child.stop()
    assert not (data_dir / "postmaster.pid").exists()  # stopped, not left running


def test_temporal_state_is_one_file_per_database(pg_server: str, tmp_path: Path) -> None:
    """Issue 13: workflows of an earlier database resumed against a new one. The state file is
    chosen by the database's identity, which a new database - even of the same name - changes."""
    name = f"bankflow_dev_{uuid.uuid4().hex[:8]}"
    other = f"bankflow_dev_{uuid.uuid4().hex[:8]}"
    try:
        first = dev.prepare_database(dev.plan_database(
            {"BANKFLOW_DATABASE_URL": local_postgres.with_database(pg_server, name)}), tmp_path)  # fmt: skip
        again = local_postgres.database_identity(pg_server, name)
        second = dev.prepare_database(dev.plan_database(
            {"BANKFLOW_DATABASE_URL": local_postgres.with_database(pg_server, other)}), tmp_path)  # fmt: skip
        local_postgres.drop_app_database(pg_server, name)
        remade = dev.prepare_database(dev.plan_database(
            {"BANKFLOW_DATABASE_URL": local_postgres.with_database(pg_server, name)}), tmp_path)  # fmt: skip
        files = {dev.temporal_state_file(tmp_path, p.identity) for p in (first, second, remade)}
        assert len(files) == 3
        assert dev.temporal_state_file(tmp_path, again) == dev.temporal_state_file(
            tmp_path, first.identity
        )
        assert all(f.parent == tmp_path / "temporal" for f in files)
    finally:
        local_postgres.drop_app_database(pg_server, name)
        local_postgres.drop_app_database(pg_server, other)


def test_signing_keys_are_generated_once_under_data_and_are_strong(tmp_path: Path) -> None:
    unset = Settings(jwt_keys=KeyRing())
    first = dev.dev_secrets(tmp_path, unset)
    assert set(first) == {"BANKFLOW_JWT_KEYS"}
    path = tmp_path / "secrets" / "jwt_keys"
    assert path.stat().st_mode & 0o777 == 0o600
    assert dev.dev_secrets(tmp_path, unset) == first  # the same key at every later start
    ring = KeyRing.parse(first["BANKFLOW_JWT_KEYS"])
    assert ring.weaknesses() == []
    Settings(jwt_keys=ring).refuse_insecure()  # what the children will start with
    # a key the developer set is theirs: nothing generated, nothing overridden
    own = Settings(jwt_keys=KeyRing.parse(KeyRing.generate_entry("mine")))
    assert dev.dev_secrets(tmp_path / "other", own) == {}
    assert not (tmp_path / "other").exists()


def test_banner_prints_the_metrics_urls_of_api_worker_and_sdk() -> None:
    settings = Settings(worker_metrics_port=19464, worker_sdk_metrics_port=19465)
    text = dev.banner("postgresql://app@127.0.0.1/bankflow", settings)
    assert f"http://127.0.0.1:{dev.API_PORT}/metrics (API)" in text
    assert "http://127.0.0.1:19464/metrics (worker)" in text
    assert "http://127.0.0.1:19465/metrics (Temporal SDK)" in text
    # the CLI in another shell needs make run's payload key to read Temporal's payloads
    assert f"export BANKFLOW_PAYLOAD_KEYS=$(cat {dev.DATA / 'secrets' / 'payload_keys'})" in text
    off = dev.banner("postgresql://app@127.0.0.1/bankflow", Settings(metrics_enabled=False))
    assert "/metrics" not in off


def test_the_payload_key_is_generated_once_under_data_like_the_signing_key(
    tmp_path: Path,
) -> None:
    unset = Settings(jwt_keys=KeyRing(), payload_keys=KeyRing())
    first = dev.dev_secrets(tmp_path, unset)
    assert set(first) == {"BANKFLOW_JWT_KEYS", "BANKFLOW_PAYLOAD_KEYS"}
    path = tmp_path / "secrets" / "payload_keys"
    assert path.stat().st_mode & 0o777 == 0o600
    assert dev.dev_secrets(tmp_path, unset) == first
    ring = KeyRing.parse(first["BANKFLOW_PAYLOAD_KEYS"])
    assert ring.weaknesses() == [] and ring != KeyRing.parse(first["BANKFLOW_JWT_KEYS"])
    Settings(jwt_keys=first["BANKFLOW_JWT_KEYS"], payload_keys=ring).refuse_insecure()
