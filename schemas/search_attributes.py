"""Search attributes shown in the Temporal Web UI. No personal data ever goes in here.

The dev launcher, docker-compose's registration job and the test harness all register exactly
this list, so the UI columns are the same everywhere.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

PROCESS = SearchAttributeKey.for_keyword("BankflowProcess")
STAGE = SearchAttributeKey.for_keyword("BankflowStage")
BRANCH = SearchAttributeKey.for_keyword("BankflowBranch")
PRODUCT = SearchAttributeKey.for_keyword("BankflowProduct")
AMOUNT_MINOR = SearchAttributeKey.for_int("BankflowAmountMinor")
CURRENCY = SearchAttributeKey.for_keyword("BankflowCurrency")
ASSIGNED_ROLE = SearchAttributeKey.for_keyword("BankflowAssignedRole")
BUSINESS_ID = SearchAttributeKey.for_keyword("BankflowBusinessId")
RISK = SearchAttributeKey.for_keyword("BankflowRisk")

ALL: tuple[SearchAttributeKey[str] | SearchAttributeKey[int], ...] = (
    PROCESS,
    STAGE,
    BRANCH,
    PRODUCT,
    AMOUNT_MINOR,
    CURRENCY,
    ASSIGNED_ROLE,
    BUSINESS_ID,
    RISK,
)


def cli_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    flags: list[str] = []
    for key in ALL:
        kind = "Int" if key.name == AMOUNT_MINOR.name else "Keyword"
        flags += ["--search-attribute", f"{key.name}={kind}"]
    return flags
