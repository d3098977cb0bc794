"""`bankflow loans schedule`, run as the installed command: the issue's exact invocation and
JSON, the defaults, and a one-line error with exit status 2 for a bad combination."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BANKFLOW = str(Path(sys.executable).parent / "bankflow")
ISSUE_EXAMPLE = (
    "--principal 5000 --annual-rate 12 --repayments 18 --every 1 --frequency months "
    "--interest-method declining_balance --amortization equal_installments "
    "--interest-period same_as_repayment --days-in-year actual --days-in-month actual "
    "--disbursed-on 2022-11-01 --first-repayment-on 2022-12-01 --currency EUR "
    "--installment-multiple 1 --grace-principal 0 --grace-interest-payment 0 "
    "--grace-interest-charged 0 --json"
).split()


def schedule(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BANKFLOW, "loans", "schedule", *args], capture_output=True, text=True, timeout=60
    )


def test_issue_example_prints_the_contract_json() -> None:
    run = schedule(*ISSUE_EXAMPLE)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(
        '{"currency": "EUR", "installments": [{"number": 1, "due_date": "2022-12-01", '
        '"principal": "255.00", "interest": "50.00", "total": "305.00", "balance": "4745.00"}, '
    )
    body = json.loads(run.stdout)
    assert list(body) == [
        "currency",
        "installments",
        "total_principal",
        "total_interest",
        "total_due",
    ]
    assert (body["total_principal"], body["total_interest"], body["total_due"]) == (
        "5000.00",
        "488.22",
        "5488.22",
    )


def test_every_option_has_a_default() -> None:
    run = schedule("--json")
    assert run.returncode == 0, run.stderr
    body = json.loads(run.stdout)
    assert body["currency"] == "USD" and len(body["installments"]) == 12
    assert body["total_principal"] == "1000.00"
    table = schedule("--repayments", "2")
    assert table.returncode == 0 and "repayment schedule (USD)" in table.stdout


def test_scale_follows_the_currency() -> None:
    yen = json.loads(schedule("--currency", "JPY", "--principal", "100000", "--json").stdout)
    assert yen["installments"][0]["interest"] == "1000"
    dinar = json.loads(schedule("--currency", "BHD", "--json").stdout)
    assert dinar["total_principal"] == "1000.000"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grace-principal", "12"], "grace on principal"),
        (["--frequency", "years"], "--frequency"),
        (["--disbursed-on", "2024-13-01"], "--disbursed-on"),
        (["--principal", "10.001"], "more than 2 decimal places"),
        (["--currency", "XTS"], "give --scale"),
        (["--installment-multiple", "5000"], "more than the installment"),
    ],
)
def test_bad_combination_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    run = schedule(*args, "--json")
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1 and message in run.stderr
