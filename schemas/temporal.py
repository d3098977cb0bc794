"""The one way to reach Temporal: every client (worker, API, CLI, tests, benches) connects here.

What travels in a payload is decided by `data_converter`; a connection's extras (a private
runtime for short-lived commands) by `connect`. Keep both here so worker, API, CLI and replayer
can never disagree on how a payload is encoded.
"""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from schemas import telemetry
from schemas.payload_codec import EncryptionCodec
from schemas.settings import Settings


def data_converter(settings: Settings) -> DataConverter:
    """The converter every client, worker and replayer uses: pydantic models as JSON, every
    payload then encrypted with the newest key of `settings.payload_keys` (schemas/payload_codec).

    Failures too: an error's message and stack trace (which may quote a value, an account or a
    reason) travel as an encrypted payload, and the server keeps "Encoded failure" in their place;
    every client and worker here, and the Web UI through the codec endpoint, decodes them back.
    """
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(settings.payload_keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def connect(
    settings: Settings,
    *,
    target: str | None = None,
    short_lived: bool = False,
    sdk_metrics: str | None = None,
) -> Client:
    """Connect to `target` (default: the configured address) in the configured namespace.

    `short_lived` is for a command that exits when done (the CLI): it gets a Runtime of its own
    instead of the process-wide default, which lives in a module global and is torn down during
    interpreter finalization while its Rust threads can still be releasing the GIL (a "Fatal
    Python error: PyGILState_Release" at exit). A private runtime is dropped with the client.

    `sdk_metrics` ("host:port", the worker) serves the Temporal SDK's own metrics (task
    latencies, polls, workflow completions and failures by type) for Prometheus on that address,
    from a Runtime of the client's own. When tracing is on (schemas/telemetry.py) the client
    carries OpenTelemetry's interceptor, and so does every worker built on it.
    """
    runtime = None
    if sdk_metrics:
        runtime = Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(
                    bind_address=sdk_metrics,
                    counters_total_suffix=True,  # the OpenMetrics names, as ours
                    durations_as_seconds=True,
                )
            )
        )
    elif short_lived:
        runtime = Runtime(telemetry=TelemetryConfig())
    return await Client.connect(
        target or settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        interceptors=telemetry.temporal_interceptors(),
        runtime=runtime,
    )
