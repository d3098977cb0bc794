"""Telemetry tests use the API suite's staff users."""

from tests.api.conftest import api_app, api_settings, client, staff  # noqa: F401  (fixtures)
