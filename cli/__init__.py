"""The `bankflow` command line (typer/rich): `main` assembles the commands; `schedules` (Temporal
Schedules and month-end), `daily_loan_job`, `loans` (the offline schedule calculator), and
`follow` (start or join a batch workflow, then follow its progress until it ends).

It may import activities (for set-up that needs no workflow), workflows (typed references),
schemas, domain and the API's non-route modules (token issue, access matrix); no route module.
"""
