"""Search attributes shown in the Temporal Web UI. No personal data ever goes in here.

The dev launcher, docker-compose's registration job and the test harness all register exactly
this list, so the UI columns are the same everywhere.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

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


def at_start(
    process: str,
    stage: str,
    *,
    business_id: str,
    branch: str | None = None,
    product: str | None = None,
    amount_minor: int | None = None,
    currency: str | None = None,
) -> TypedSearchAttributes:
    """The attributes a process starts with: what it is, where it stands, and (when it has
    them) its branch, product and amount. Every starter (routes, CLI) builds them here."""
    pairs: list[SearchAttributePair[str] | SearchAttributePair[int]] = [
        SearchAttributePair(PROCESS, process),
        SearchAttributePair(STAGE, stage),
    ]
    if branch is not None:
        pairs.append(SearchAttributePair(BRANCH, branch))
    if product is not None:
        pairs.append(SearchAttributePair(PRODUCT, product))
    if amount_minor is not None:
        pairs.append(SearchAttributePair(AMOUNT_MINOR, amount_minor))
    if currency is not None:
        pairs.append(SearchAttributePair(CURRENCY, currency))
    pairs.append(SearchAttributePair(BUSINESS_ID, business_id))
    return TypedSearchAttributes(pairs)
