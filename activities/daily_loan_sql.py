"""The daily loan job's one day in Postgres: `service_loan`'s rules as one set-based statement
over a batch's locked loans, for every loan whose next day to service is the business date (the
daily cadence: serviced through the day before, or disbursed the day before) or that has no day
to service yet (disbursed on the date itself), so a million loans cost no Python per loan.

`activities.daily_loan_servicing.service_loan` stays the definition, and services the loans a
missed run left several days behind (a loop per day). tests/daily_loan_job/test_servicing_sql.py
proves the two equal with hypothesis over random loans, installments, rates and rounding modes.

Exactness: the day's penalty is `overdue x rate / 36500` rounded half-even to 12 places. The
product `overdue x rate` is exact (rates have at most 6 places); it is widened to 30 places
before dividing, so the quotient is within 1e-30 of the true value, and a true value that is not
on a 12-place half-way point lies at least 1 / (36500 x 1e18) from one: rounding the 30-place
quotient decides exactly as the exact rational does. The interest earned on an installment is a
ratio of integers, rounded by integer division and its remainder (`domain.money.round_ratio`).
"""

from __future__ import annotations

from sqlalchemy import text

# The temporary table a batch services into, one row per loan; the batch's writes read it.
SERVICED = "dl_serviced"
# Its columns, in the order the Python path inserts them.
COLUMNS = (
    "loan_id", "currency", "accrual", "days_past_due", "bucket", "overdue_since",
    "overdue_minor", "penalty_exact", "penalty_charged", "penalty_installment", "accrual_minor",
)  # fmt: skip
# The range's active loans the job has not serviced through :d (`l` loans)...
PENDING_LOANS = """l.state = 'active' AND l.id BETWEEN :lo AND :hi
    AND l.disbursed_on <= :d AND (l.serviced_through IS NULL OR l.serviced_through < :d)"""
# ... joined to their terms (`t`): the range repeated, so the join is one range scan of each.
PENDING = PENDING_LOANS + " AND t.loan_id BETWEEN :lo AND :hi"
# The first day a loan has not been serviced for.
START = "(COALESCE(l.serviced_through, l.disbursed_on) + 1)"


def half_even_12(x: str) -> str:
    """SQL: the non-negative numeric column `x` rounded half-even to 12 places."""
    xs = f"({x} * 1000000000000)"
    return (
        f"(CASE WHEN {xs} - trunc({xs}) = 0.5 AND mod(trunc({xs}), 2) = 0"
        f" THEN trunc({x}, 12) ELSE round({x}, 12) END)"
    )


def to_integer(x: str, mode: str) -> str:
    """SQL: the non-negative numeric column `x` rounded to an integer by the Decimal rounding
    name in `mode` (`Decimal.to_integral_value`); for non-negative values CEILING is UP and
    FLOOR is DOWN."""
    tie = f"({x} - trunc({x}) = 0.5)"
    return (
        f"(CASE WHEN {mode} IN ('ROUND_DOWN', 'ROUND_FLOOR') THEN trunc({x})"
        f" WHEN {mode} IN ('ROUND_UP', 'ROUND_CEILING') THEN ceil({x})"
        f" WHEN {mode} = 'ROUND_HALF_UP' THEN round({x})"
        f" WHEN {mode} = 'ROUND_HALF_DOWN' THEN CASE WHEN {tie} THEN trunc({x}) ELSE round({x}) END"
        f" ELSE CASE WHEN {tie} AND mod(trunc({x}), 2) = 0 THEN trunc({x}) ELSE round({x}) END"
        " END)"
    )


def ratio(num: str, den: str, mode: str) -> str:
    """SQL: the non-negative `num / den` (numeric columns, `den` > 0) rounded to an integer by
    `mode`, exactly, from the integer quotient and remainder (`domain.money.round_ratio`)."""
    q, r = f"div({num}, {den})", f"mod({num}, {den})"
    return (
        f"(CASE WHEN {r} = 0 OR {mode} IN ('ROUND_DOWN', 'ROUND_FLOOR') THEN {q}"
        f" WHEN {mode} IN ('ROUND_UP', 'ROUND_CEILING') THEN {q} + 1"
        f" WHEN 2 * {r} <> {den} THEN {q} + CASE WHEN 2 * {r} > {den} THEN 1 ELSE 0 END"
        f" WHEN {mode} = 'ROUND_HALF_UP' THEN {q} + 1"
        f" WHEN {mode} = 'ROUND_HALF_DOWN' THEN {q}"
        f" ELSE {q} + mod({q}, 2) END)"
    )


# What an installment `i` owes of principal and interest (what penalties and PAR count), and
# whether it still owes anything at all.
OWED = (
    "(i.principal_minor - i.principal_paid_minor)"
    " + (i.interest_minor - i.interest_waived_minor - i.interest_paid_minor)"
)
OPEN = f"({OWED} + (i.fee_minor - i.fee_paid_minor) + (i.penalty_minor - i.penalty_paid_minor) > 0)"

# Interest earned on an installment part-way through its period: its share of the days elapsed.
EARNED_SHARE = ratio("share_num", "share_den", "d.mode")

# Parameters :lo, :hi (loan ids), :d (the business date). The caller has locked the loans.
SERVICE_ONE_DAY = text(
    f"""
    CREATE TEMP TABLE {SERVICED} ON COMMIT DROP AS
    WITH due AS MATERIALIZED (
        SELECT l.id AS loan_id, l.currency, l.penalty_exact AS exact_before,
               l.interest_recognized_minor AS recognized,
               CAST(COALESCE(t.product_snapshot->>'penalty_rate', '0') AS numeric) AS rate,
               COALESCE(t.product_snapshot->>'accounting', 'cash') = 'accrual' AS accrual,
               'ROUND_' || COALESCE(t.product_snapshot->>'rounding_mode', 'HALF_EVEN') AS mode,
               {START} = :d AS one_day
        FROM loans l JOIN loan_terms t ON t.loan_id = l.id
        WHERE {PENDING} AND {START} >= :d
    ), day AS (
        -- Per loan, a lateral aggregate over its installments: one index scan each, whatever
        -- the planner estimates for `due` (a join on that estimate went quadratic at 1M loans).
        SELECT d.*, p.since, p.overdue, p.target, p.charged_before, p.earned,
               d.one_day AND p.since IS NOT NULL AS penalised,
               CAST(CAST(p.overdue * d.rate AS numeric(60, 30)) / 36500 AS numeric(60, 30))
                   AS day_penalty
        FROM due d CROSS JOIN LATERAL (
            SELECT min(due_on) FILTER (WHERE late) AS since,
                   COALESCE(sum(owed) FILTER (WHERE late), 0) AS overdue,
                   COALESCE(sum(penalty_minor), 0) AS charged_before,
                   -- The oldest late installment, by (due date, number), without a sort: the
                   -- least of day x 2^16 + number (numbers are 1 and up, smallints) holds it.
                   CAST((min(CAST(due_on - DATE '2000-01-01' AS bigint) * 65536 + number)
                         FILTER (WHERE late)) & 65535 AS int) AS target,
                   COALESCE(sum(COALESCE(earned_whole, {EARNED_SHARE})), 0) AS earned
            FROM (
                -- What servicing through :d can see of an installment (as `INSTALLMENTS`
                -- reads them).
                SELECT i.number, i.due_on, i.penalty_minor,
                       i.due_on < :d AND {OPEN} AS late, {OWED} AS owed,
                       CASE WHEN :d >= i.due_on THEN i.interest_minor - i.interest_waived_minor
                            WHEN :d <= i.from_on THEN 0 END AS earned_whole,
                       CAST(i.interest_minor - i.interest_waived_minor AS numeric)
                           * (:d - i.from_on) AS share_num,
                       CAST(i.due_on - i.from_on AS numeric) AS share_den
                FROM loan_installments i
                WHERE i.loan_id = d.loan_id
                  AND (i.from_on < :d OR i.due_on <= :d OR i.penalty_minor <> 0)
            ) i
        ) p
    ), priced AS (
        SELECT day.*,
               CASE WHEN penalised THEN exact_before + {half_even_12("day_penalty")}
                    ELSE exact_before END AS penalty_exact
        FROM day
    )
    SELECT loan_id, currency, accrual,
           CASE WHEN since IS NULL THEN 0 ELSE :d - since END AS days_past_due,
           CAST(CASE WHEN since IS NULL THEN 'current' WHEN :d - since <= 30 THEN '1-30'
                     WHEN :d - since <= 60 THEN '31-60' WHEN :d - since <= 90 THEN '61-90'
                     ELSE 'over_90' END AS text) AS bucket,
           since AS overdue_since, CAST(overdue AS bigint) AS overdue_minor,
           CAST(penalty_exact AS numeric(30, 12)) AS penalty_exact,
           CAST(CASE WHEN penalised
                     THEN greatest(0, {to_integer("penalty_exact", "mode")} - charged_before)
                     ELSE 0 END AS bigint) AS penalty_charged,
           CASE WHEN one_day THEN target END AS penalty_installment,
           CAST(CASE WHEN accrual THEN greatest(0, earned - recognized) ELSE 0 END AS bigint)
               AS accrual_minor
    FROM priced
    """
)
