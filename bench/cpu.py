"""CPU seconds of process trees from /proc, so a bench can charge each process its share of an
answer: the API, the worker, the Temporal server, Postgres. Per answer, these stay comparable
when the machine is busy, where rates do not."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> tuple[dict[int, int], dict[int, float], dict[int, str]]:
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, fields = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        pid = int(entry.name)
        names[pid] = head.split("(", 1)[1]
        parts = fields.split()
        parents[pid] = int(parts[1])
        times[pid] = sum(int(f) for f in parts[11:15]) / TICK
    return parents, times, names


def cpu_seconds(root: int) -> float:
    """CPU seconds used by a process tree so far (the live processes, and the reaped children
    they waited for: a Postgres backend that ended counts in the postmaster's)."""
    parents, times, _ = _processes()
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(times.get(pid, 0.0) for pid in tree)


def children_seconds(root: int) -> float:
    """What `root`'s child processes used, not `root` itself (a dev server a bench started)."""
    _, times, _ = _processes()
    return cpu_seconds(root) - times.get(root, 0.0)


def named_seconds(name: str) -> float:
    """What every live process of that name used (the machine's Postgres, its backends)."""
    _, times, names = _processes()
    return sum(t for pid, t in times.items() if names.get(pid) == name)
