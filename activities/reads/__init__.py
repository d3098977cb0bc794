"""Read models: the queries the API answers with, read-only, never locking, never committing.

- `books`: member search, account views and statements, the trial balance, journals;
- `loan_statement`: a disbursed loan's payoff quote, statement and disbursements;
- `loans`: the facts a loan route checks before it starts a workflow;
- `kyc`, `notifications`: a KYC case by number, the notification outbox;
- `health`: whether Postgres answers.

Routes call these; they run no SQL of their own.
"""
