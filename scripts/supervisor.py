"""The dev launcher's children: started in their own session, stopped with escalation, and
restarted with backoff when they die, as docker-compose's `restart: unless-stopped` does.

A dead child is started again after 1 s, then 2, 4, ... up to 30 s while it keeps dying; a child
that ran for a minute is back to 1 s. Each death and restart is one line on the launcher's
output and in .data/logs/launcher.log; the child's own output goes on in its log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRACE = 15.0
BACKOFF_BASE = 1.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # a child that ran this long starts its backoff over

Launch = Callable[[], "subprocess.Popen[bytes]"]


def how_it_ended(code: int) -> str:
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited ({code})"


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    stop_signal: signal.Signals = signal.SIGTERM
    grace: float = GRACE
    launch: Launch | None = None  # how to start it again; None: its death ends the launcher
    started_at: float = field(default_factory=time.monotonic)
    deaths: int = 0  # in a row, without a stable run between
    restart_at: float | None = None

    def stop(self) -> None:
        """Signal the child's whole process group, then kill it if it outlives its grace."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, self.stop_signal)
            self.proc.wait(self.grace)
        except subprocess.TimeoutExpired:
            print(f"{self.name} did not stop within {self.grace:.0f}s; killing it")
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass


def popen(
    cmd: list[str], env: Mapping[str, str], log: Path, *, append: bool
) -> subprocess.Popen[bytes]:
    """A child in its own session, so a terminal Ctrl-C reaches only the launcher and we choose
    the stop order. The first start truncates its log (a tail never shows an older run); a
    restart appends, so the log shows why it died."""
    with open(log, "ab" if append else "wb") as out:
        return subprocess.Popen(
            cmd, cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def spawn(
    name: str, cmd: list[str], env: Mapping[str, str], logs: Path, grace: float = GRACE
) -> Child:
    log = logs / f"{name}.log"
    return Child(
        name,
        popen(cmd, env, log, append=False),
        log,
        grace=grace,
        launch=lambda: popen(cmd, env, log, append=True),
    )


class Supervisor:
    """Restarts dead children with backoff; the others keep running."""

    def __init__(
        self,
        log: Path,
        *,
        backoff_base: float = BACKOFF_BASE,
        backoff_max: float = BACKOFF_MAX,
        stable_after: float = STABLE_AFTER,
    ) -> None:
        self.log = log
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.stable_after = stable_after

    def note(self, message: str) -> None:
        """One line on the launcher's output and in its log."""
        print(f"launcher: {message}", flush=True)
        with open(self.log, "a") as out:
            out.write(f"{datetime.now().isoformat(timespec='seconds')} {message}\n")

    def tend(self, children: list[Child]) -> None:
        """One round: schedule a restart for each newly dead child, restart those now due."""
        now = time.monotonic()
        for child in children:
            code = child.proc.poll()
            if code is None or child.launch is None:
                continue
            if child.restart_at is None:
                if now - child.started_at >= self.stable_after:
                    child.deaths = 0
                delay = min(self.backoff_base * 2**child.deaths, self.backoff_max)
                child.deaths += 1
                child.restart_at = now + delay
                self.note(f"{child.name} {how_it_ended(code)}; restarting in {delay:g}s")
            elif now >= child.restart_at:
                self._restart(child)

    def _restart(self, child: Child) -> None:
        assert child.launch is not None
        child.restart_at = None
        child.started_at = time.monotonic()
        try:
            child.proc = child.launch()
        except (OSError, RuntimeError, subprocess.SubprocessError) as error:
            # Counted as another death: the next round schedules the next, longer, wait.
            self.note(f"{child.name} could not be restarted: {error}")
            return
        self.note(f"{child.name} restarted (pid {child.proc.pid}, restart {child.deaths} in a row)")
