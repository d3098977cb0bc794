"""The Temporal dev server of `make run`: its command line, our search attributes on it, health."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from schemas.search_attributes import cli_flags

HOST = "127.0.0.1"
TEMPORAL_PORT = 7233
UI_PORT = 8233


# One partition per task queue: partitions spread a queue over the matching hosts of a cluster;
# in the dev server's one process, a queue's four (the default) only kept a new workflow task and
# the worker's waiting poll apart more often. Bare workflows, 8 in flight, alternating runs:
# 58 -> 67/s (median of six 400-run rounds each). For every dev server: make run's, the benches'
# and the tests' (`dev_server_extra_args`).
ONE_PARTITION = [
    "--dynamic-config-value",
    "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value",
    "matching.numTaskqueueWritePartitions=1",
]


class TemporalSetupError(Exception):
    """Registering a search attribute failed; the message has the CLI's output."""


def temporal_command(
    binary: str,
    db_file: Path,
    *,
    port: int = TEMPORAL_PORT,
    ui_port: int = UI_PORT,
    codec_endpoint: str | None = None,
) -> list[str]:
    """`temporal server start-dev` with a persistent SQLite file and our search attributes; with
    `codec_endpoint`, its Web UI decodes payloads through the API's /codec (api/routes/codec)."""
    cmd = [binary, "server", "start-dev", "--ip", HOST, "--port", str(port)]
    cmd += ["--ui-port", str(ui_port), "--db-filename", str(db_file)]
    # SQLite's defaults sync the file on every write; in WAL mode with synchronous=normal a
    # commit survives the process dying (only a power cut may lose the last few), and the dev
    # server took 17 deposits/s instead of 11 with 8 clients (bench/api.py, one run each).
    cmd += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
    cmd += ONE_PARTITION
    if codec_endpoint:
        cmd += ["--ui-codec-endpoint", codec_endpoint]
    if "--ui-disable-news-fetch" in _cli(binary, "server", "start-dev", "--help")[1]:
        cmd.append("--ui-disable-news-fetch")  # no outbound call from the UI (offline machines)
    return cmd + cli_flags()


def _cli(binary: str, *args: str) -> tuple[int, str]:
    """Run a short `temporal` CLI command; its exit code and combined output."""
    done = subprocess.run([binary, *args], capture_output=True, text=True, check=False)
    return done.returncode, done.stdout + done.stderr


def search_attribute_types() -> dict[str, str]:
    """Name -> CLI type, read back from the start-dev flags so both paths register the same set."""
    flags = cli_flags()
    pairs = (flags[i + 1].split("=", 1) for i in range(0, len(flags), 2))
    return {name: kind for name, kind in pairs}


def register_search_attributes(
    binary: str, address: str, attributes: Mapping[str, str] | None = None
) -> None:
    """Register every attribute; re-registering with the same type is a no-op."""
    for name, kind in (attributes or search_attribute_types()).items():
        code, output = _cli(
            binary, "operator", "search-attribute", "create", "--address", address,
            "--name", name, "--type", kind,
        )  # fmt: skip
        # Older servers refuse a duplicate with "already exists"; a type clash must still fail.
        duplicate = "already exists" in output and "different type" not in output
        if code != 0 and not duplicate:
            raise TemporalSetupError(f"registering search attribute {name} on {address}:\n{output}")


def temporal_healthy(binary: str, address: str) -> bool:
    code, output = _cli(
        binary, "operator", "cluster", "health", "--address", address, "--command-timeout", "2s"
    )
    return code == 0 and "SERVING" in output
