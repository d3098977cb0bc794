"""Recording workflow histories for the replay tests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle

HISTORIES = Path(__file__).parent / "histories"


async def record_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """Save a finished workflow's history for the replay tests when BANKFLOW_RECORD_HISTORIES=1.

    Recorded histories are committed; CI replays them against the current workflow code, so a
    change that breaks determinism for running workflows fails the build.
    """
    if not os.environ.get("BANKFLOW_RECORD_HISTORIES"):
        return
    history = await handle.fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(json.dumps(json.loads(history.to_json()), indent=1))
