"""Telemetry tests use the API suite's staff users."""

from tests.api.conftest import api_settings, staff  # noqa: F401  (fixtures)
