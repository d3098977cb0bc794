"""What a chaos run prints: per fault its recovery, the answers the clients saw on the way, the
findings, and the closing verdict line."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from typing import Any

from bench.chaos.books import FINANCE, Verdict
from bench.chaos.client import Answer, Api
from bench.chaos.faults import KINDS, Fault
from bench.chaos.processes import ProcessReport

BLOCKED_TARGET_S = 15.0  # issue 13: a stale claim must never block a retry longer than this
SHOWN = 10


def wall(api: Api, relative: float) -> datetime:
    """A run-relative time on the wall clock, to compare with a journal's created_at."""
    return datetime.fromtimestamp(time.time() - api.now() + relative).astimezone()


def journal_of(answer: Answer) -> str | None:
    """The journal a command's answer says it posted. A reversal's `journal_id` is the journal
    it reverses; what it posted is `reversal_journal_id`."""
    body = answer.body if isinstance(answer.body, dict) else {}
    found = body["reversal_journal_id"] if "reversal_journal_id" in body else body.get("journal_id")
    return str(found) if found else None


async def posted_before_500(api: Api) -> list[tuple[Answer, float]]:
    """Commands that got a 500 although their money had already moved: (answer, seconds the
    journal was posted before that 500)."""
    found = []
    for answer in api.answers:
        fives = [a for a in answer.attempts if a.status == 500]
        journal = journal_of(answer)
        if not fives or journal is None:
            continue
        view = await api.read(FINANCE, f"/v1/journals/{journal}")
        if view.status != 200:
            continue
        posted = datetime.fromisoformat(view.body["created_at"])
        lead = (wall(api, fives[0].ended) - posted).total_seconds()
        if lead > 0:
            found.append((answer, lead))
    return found


def fault_lines(faults: list[Fault]) -> list[str]:
    lines = ["chaos faults:   kind            at_s  restart_s  recovery_s  inflight_s"]
    for f in faults:
        recovery = f"{f.recovery_s:10.1f}" if f.recovery_s is not None else "     never"
        lines.append(
            f"chaos faults:   {f.kind:<14} {f.at:6.1f}  {f.restored - f.at:9.1f}  {recovery}  "
            f"{f.inflight_s:10.1f}"
        )
    for kind in KINDS:
        mine = [f for f in faults if f.kind == kind]
        if mine:
            worst = max((f.recovery_s or float("inf")) for f in mine)
            lines.append(
                f"chaos recovery: {kind:<14} n={len(mine)} recovery_max_s={worst:.1f} "
                f"inflight_max_s={max(f.inflight_s for f in mine):.1f}"
            )
    return lines


def answer_lines(api: Api, fives: list[tuple[Answer, float]]) -> list[str]:
    finals = Counter(f"{a.status}{'/' + a.error if a.error else ''}" for a in api.answers)
    retried = Counter(
        str(t.status or t.error) + (f"/{t.error}" if t.status and t.error else "")
        for a in api.answers
        for t in a.attempts[:-1]
    )
    blocked = sorted(api.answers, key=lambda a: a.blocked_s, reverse=True)
    slow = [a for a in blocked if a.blocked_s > BLOCKED_TARGET_S]
    lines = [
        "chaos answers:  " + ", ".join(f"{k}={v}" for k, v in sorted(finals.items())),
        "chaos retried:  " + (", ".join(f"{k}={v}" for k, v in sorted(retried.items())) or "none"),
        f"chaos 500s for money that had moved: {len(fives)}"
        + "".join(
            f"\n  {a.label} {a.path}: posted {lead:.1f} s before the 500"
            for a, lead in fives[:SHOWN]
        ),
        f"chaos blocked over {BLOCKED_TARGET_S:.0f} s: {len(slow)} commands",
    ]
    for a in slow[:SHOWN]:
        why = Counter(str(t.error or t.status) for t in a.attempts[:-1]).most_common(2)
        lines.append(
            f"  {a.label} {a.path}: {a.blocked_s:.1f} s, {len(a.attempts)} attempts "
            f"({', '.join(f'{k} x{v}' for k, v in why)}), answered {a.status}"
        )
    return lines


def print_report(
    api: Api,
    faults: list[Fault],
    verdict: Verdict,
    procs: ProcessReport,
    verified: bool,
    breaches: list[str],
    month_end: dict[str, Any] | None,
    fives: list[tuple[Answer, float]],
) -> int:
    """Print everything; the exit status: 0 when nothing was lost, duplicated or mismatched, no
    500 answered a command whose money had moved, and the ledger verified (blocked_max_s is a
    figure, held to its target by the slow test)."""
    lines = fault_lines(faults) + answer_lines(api, fives)
    if month_end:
        totals = ", ".join(
            f"{t['currency']} net {t['net']} on {t['accounts']} accounts"
            for t in month_end["totals"]
        )
        lines.append(f"chaos month-end {month_end['period']}: {month_end['status']}, {totals}")
    lines.append(
        "chaos processes: " + ", ".join(f"{k}={v}" for k, v in sorted(procs.counts.items()))
    )
    lines += [f"chaos finding:  {f}" for f in verdict.findings]
    lines += [f"chaos ledger verify breach: {b}" for b in breaches]
    blocked_max = max((a.blocked_s for a in api.answers), default=0.0)
    target = "met" if blocked_max <= BLOCKED_TARGET_S else "missed"
    lines.append(f"chaos blocked_max_s target <= {BLOCKED_TARGET_S:.0f} s: {target}")
    lines.append(
        f"chaos requests={len(api.answers)} faults={len(faults)} lost={verdict.lost} "
        f"duplicated={verdict.duplicated} mismatched={verdict.mismatched} "
        f"after500={len(fives)} blocked_max_s={blocked_max:.1f} "
        f"verify={'ok' if verified else 'failed'}"
    )
    print("\n".join(lines), flush=True)
    clean = verdict.lost == verdict.duplicated == verdict.mismatched == len(fives) == 0
    return 0 if clean and verified else 1
