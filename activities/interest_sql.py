"""Month-end savings interest priced in Postgres: `domain.interest`'s rules as one set-based
statement over a batch of accounts, so a million accounts cost no Python per account.

`domain.interest` stays the definition; this is its set-based twin for monthly-compounding
products (the common case: daily or average daily balance, tiers, any posting period, rounding
mode and currency scale, carry from the previous month, accounts opened or closed in the
month). Daily compounding compounds each day on the last, a loop per day, and is priced by
`domain.interest` itself. tests/month_end/test_interest_sql.py proves the two equal with
hypothesis over random products and accounts.

Exactness: every day's interest is `balance x rate / days-in-year` rounded to 9 places by the
product's mode. The product `balance x rate` is exact (scale <= 18); it is widened to 30
places before dividing, so the quotient is within 1e-30 of the true value. A true value that
is not exactly on a 9-place boundary (or half-way point) lies at least 1 / (366 x 1e18) from
it, so rounding the 30-place quotient decides exactly as `Decimal` does at 50 digits. The
average daily balance is widened the same way before its division by the open days.
"""

from __future__ import annotations

from sqlalchemy import text

# The temporary table a batch prices into; the batch's writes read it. Dropped at commit.
PRICED = "me_priced"

# Both below repeat the batch's range on every table joined to savings_accounts. Postgres
# carries an equality across a join but not a BETWEEN: without the repeats each batch scanned
# all of ledger_accounts and every interest row of the period (and of the one before) posted so
# far, which made a million-account month-end quadratic.
# The range's accounts not yet priced for the period (`s` savings_accounts, `a` their ledger rows).
PENDING = """AND s.account_id BETWEEN :lo AND :hi AND a.id BETWEEN :lo AND :hi
    AND NOT EXISTS (SELECT 1 FROM interest_postings d
                    WHERE d.period = :period AND d.account_id = s.account_id
                      AND d.account_id BETWEEN :lo AND :hi)"""
# What the period before carried into this one (accrued interest, rounding residue), if any.
CARRY = """LEFT JOIN interest_postings c ON c.period = :prev AND c.account_id = s.account_id
                                 AND c.account_id BETWEEN :lo AND :hi"""


def rounded(x: str, places: str, mode: str, factor: str) -> str:
    """SQL: the non-negative numeric `x` rounded to `places` decimals by `mode` (a column
    holding a Decimal rounding name), as `Decimal.quantize` does; `factor` is 10^places (a
    literal or a column: computing a power per row costs more than the rounding). `x` should
    be a column: it is repeated."""
    xs = f"({x} * {factor})"
    return (
        f"(CASE {mode}"
        f" WHEN 'ROUND_HALF_UP' THEN round({x}, {places})"
        f" WHEN 'ROUND_DOWN' THEN trunc({x}, {places})"
        f" WHEN 'ROUND_UP' THEN round(ceil({xs}) / {factor}, {places})"
        f" ELSE CASE WHEN {xs} - trunc({xs}) = 0.5 AND mod(trunc({xs}), 2) = 0"
        f" THEN trunc({x}, {places}) ELSE round({x}, {places}) END END)"
    )


def _rate_for(balance_minor: str, t: str) -> str:
    """SQL: the tier rate for a balance in minor units (the highest tier whose minimum it
    reaches; tiers are stored sorted with distinct minimums), else the product's rate; `t` is
    the alias holding the product's `tiers` and `annual_rate`."""
    return (
        f"(CASE WHEN {t}.tiers = '[]'::jsonb THEN {t}.annual_rate ELSE coalesce("
        f"(SELECT CAST(r->>'annual_rate' AS numeric) FROM jsonb_array_elements({t}.tiers) r"
        f" WHERE CAST(r->>'min_balance_minor' AS numeric) <= {balance_minor}"
        f" ORDER BY CAST(r->>'min_balance_minor' AS numeric) DESC LIMIT 1), {t}.annual_rate)"
        " END)"
    )


NINE = "1000000000"
# Parameters: :lo, :hi (account ids), :period, :prev (the period before), :start, :end (its
# first and last day), :month (1-12). Accounts: the range's eligible savings accounts on
# monthly-compounding products not yet priced for the period (the caller has locked them).
PRICE = text(
    f"""
    CREATE TEMP TABLE {PRICED} ON COMMIT DROP AS
    WITH acc AS MATERIALIZED (
        SELECT s.account_id, a.currency, a.status = 'open' AS is_open,
               greatest(CAST(:start AS date), s.opened_on) AS first_day,
               least(CAST(:end AS date), coalesce(CAST(a.closed_at AS date), CAST(:end AS date)))
                   AS last_day,
               a.credits_posted_minor - a.debits_posted_minor AS balance,
               coalesce(c.accrued, 0) AS c_accrued, coalesce(c.residue, 0) AS c_residue,
               p.annual_rate, p.tiers, p.calculation, p.posting, p.days_in_year,
               p.min_balance_minor, p.withholding_tax_rate, p.rounding, cur.scale,
               10::numeric ^ (-cur.scale) AS unit, 10::numeric ^ cur.scale AS pow
        FROM savings_accounts s
        JOIN ledger_accounts a ON a.id = s.account_id
        JOIN savings_products p ON p.id = s.product_id
        JOIN currencies cur ON cur.code = a.currency
        {CARRY}
        WHERE p.compounding = 'monthly'
          AND s.opened_on <= :end
          AND (a.closed_at IS NULL OR CAST(a.closed_at AS date) >= :start)
          {PENDING}
    ),
    chg AS MATERIALIZED (
        -- net postings per account and value date from the period's first day on
        SELECT x.account_id, j.value_date AS d, sum(x.amount) AS amount
        FROM (SELECT credit_account_id AS account_id, journal_id, amount_minor AS amount
              FROM postings WHERE credit_account_id = ANY(ARRAY(SELECT account_id FROM acc))
              UNION ALL
              SELECT debit_account_id, journal_id, -amount_minor
              FROM postings WHERE debit_account_id = ANY(ARRAY(SELECT account_id FROM acc))) x
        JOIN journals j ON j.id = x.journal_id
        WHERE j.value_date >= :start
        GROUP BY x.account_id, j.value_date
    ),
    seg AS MATERIALIZED (
        -- runs of equal end-of-day balance: from the month's first day and from each day
        -- with a change, to the next; `cum` sums the changes up to and including the run's day
        SELECT account_id, d AS s, coalesce(lead(d) OVER w, CAST(:end AS date) + 1) AS e,
               sum(amount) OVER (w ROWS UNBOUNDED PRECEDING) AS cum,
               sum(amount) OVER (PARTITION BY account_id) AS tot
        FROM (SELECT account_id, d, amount FROM chg WHERE d > :start AND d <= :end
              UNION ALL SELECT account_id, CAST(:start AS date), 0 FROM acc) p
        WINDOW w AS (PARTITION BY account_id ORDER BY d)
    ),
    runs AS MATERIALIZED (
        -- each run's open days and balance; a run counts when its balance is above zero and
        -- at or above the product's minimum, and `day_raw` is then its day's interest before
        -- rounding
        SELECT g.account_id, a.rounding, x.days, x.bal_minor * a.unit AS b,
               CASE WHEN x.days > 0 AND x.bal_minor > 0 AND x.bal_minor >= a.min_balance_minor
                    THEN round((x.bal_minor * a.unit + a.c_accrued)
                               * {_rate_for("x.bal_minor", "a")}, 30) / a.days_in_year
               END AS day_raw
        FROM seg g JOIN acc a USING (account_id)
        LEFT JOIN (SELECT account_id, sum(amount) AS amount FROM chg WHERE d > :end
                   GROUP BY account_id) f USING (account_id)
        CROSS JOIN LATERAL (
            SELECT a.balance - coalesce(f.amount, 0) - (g.tot - g.cum) AS bal_minor,
                   greatest(0, least(g.e - 1, a.last_day) - greatest(g.s, a.first_day) + 1)
                       AS days) x
    ),
    agg AS MATERIALIZED (
        SELECT account_id, sum(days) AS open_days,
               coalesce(sum(days * {rounded("day_raw", "9", "rounding", NINE)}), 0) AS earned_db,
               coalesce(sum(CASE WHEN day_raw IS NOT NULL THEN b * days END), 0) AS total_b
        FROM runs GROUP BY account_id
    )
    -- per account from here on: each step a LATERAL subquery that the planner keeps as its own
    -- node (OFFSET 0), so a value the rounding repeats is computed once and no step copies the
    -- account's row into a CTE of its own
    SELECT a.account_id, a.currency, e.earned, CAST(po.posted * a.pow AS bigint) AS posted_minor,
           CAST({rounded("tx.tax_raw", "a.scale", "a.rounding", "a.pow")} * a.pow AS bigint)
               AS tax_minor,
           CASE WHEN NOT a.is_open OR du.posts THEN 0 ELSE du.accrued END AS accrued,
           CASE WHEN NOT a.is_open THEN 0 WHEN du.posts THEN du.due - po.posted
                ELSE a.c_residue END AS residue
    FROM agg g JOIN acc a USING (account_id)
    -- the average daily balance, before and after its rounding
    CROSS JOIN LATERAL (
        SELECT CASE WHEN g.open_days > 0 THEN round(g.total_b, 30) / g.open_days ELSE 0 END
                   AS avg_raw OFFSET 0) r
    CROSS JOIN LATERAL (
        SELECT {rounded("r.avg_raw", "9", "a.rounding", NINE)} AS average OFFSET 0) v
    CROSS JOIN LATERAL (
        SELECT CASE WHEN a.calculation = 'average_daily_balance' AND v.average > 0
                    THEN round((v.average + a.c_accrued) * {_rate_for("v.average * a.pow", "a")},
                               30) / a.days_in_year
               END AS avg_day_raw OFFSET 0) ad
    CROSS JOIN LATERAL (
        SELECT CASE WHEN a.calculation = 'daily_balance' THEN g.earned_db
                    WHEN ad.avg_day_raw IS NULL THEN 0
                    ELSE g.open_days * {rounded("ad.avg_day_raw", "9", "a.rounding", NINE)}
               END AS earned OFFSET 0) e
    CROSS JOIN LATERAL (
        SELECT a.c_accrued + e.earned AS accrued, a.c_accrued + e.earned + a.c_residue AS due,
               CASE a.posting WHEN 'monthly' THEN true
                              WHEN 'quarterly' THEN :month % 3 = 0
                              ELSE :month = 12 END AS posts OFFSET 0) du
    CROSS JOIN LATERAL (
        SELECT CASE WHEN du.posts AND a.is_open AND du.due > 0
                    THEN {rounded("du.due", "a.scale", "a.rounding", "a.pow")} ELSE 0 END
                   AS posted OFFSET 0) po
    CROSS JOIN LATERAL (SELECT po.posted * a.withholding_tax_rate AS tax_raw OFFSET 0) tx
    """
)
