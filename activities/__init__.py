"""The only code that touches Postgres, e-mail or any other outside system."""
