"""Demo data and synthetic load, never called by a workflow.

- `demo`: the demo institution `bankflow seed demo` creates (branch, chart, staff, members);
- `products`: its loan and savings products, and the demo savings history;
- `loans`: the loan brought over from a previous system;
- `synthetic`: set-based savings accounts with a month of activity, for bench/month_end.py and
  the month-end tests.
"""
