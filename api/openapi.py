"""The OpenAPI document tells the truth about errors: every route lists the error responses it
can give, each in the one error shape (`ErrorBody`), not FastAPI's default validation array.

Routes declare their business errors (`responses=errors(...)`, api/errors.py); an error response
a route declares with a model of its own (/ready's checks) keeps it. What follows from
a route's dependencies is added here, so no route can forget it:
- a bearer token: 401; a role check: 403;
- any parameter or body: 422 `ValidationError`;
- a path parameter: 404 for the thing it names;
- an `Idempotency-Key`: 409 for a key reused or still in progress;
- Postgres or Temporal: 503 when either is down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, get_args

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from api.deps import CurrentPrincipal, SessionsDep, TemporalDep
from api.errors import DESCRIPTIONS, ErrorBody
from api.idempotency import IdempotencyKey

ERROR_SCHEMA = "ErrorBody"
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
VALIDATION_REFS = frozenset(f"#/components/schemas/{name}" for name in FASTAPI_VALIDATION_SCHEMAS)


def _dependency(annotated: Any) -> Callable[..., Any]:
    call: Callable[..., Any] = get_args(annotated)[1].dependency
    return call


PRINCIPAL = _dependency(CurrentPrincipal)
SERVICES = frozenset({_dependency(SessionsDep), _dependency(TemporalDep), PRINCIPAL})
IDEMPOTENCY = _dependency(IdempotencyKey)


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any] | None]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _with_subs(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _with_subs(sub)


def _role_checked(dependant: Dependant) -> bool:
    """A dependency that itself depends on the principal: a role check, which can refuse."""
    return any(
        (sub.call is not PRINCIPAL and PRINCIPAL in set(_calls(sub))) or _role_checked(sub)
        for sub in dependant.dependencies
    )


def implied_errors(route: RouteContext) -> set[int]:
    calls = set(_calls(route.dependant))
    every = list(_with_subs(route.dependant))
    statuses: set[int] = set()
    if PRINCIPAL in calls:
        statuses.add(401)
    if _role_checked(route.dependant):
        statuses.add(403)
    if any(d.path_params for d in every):
        statuses.add(404)
    if any(d.path_params or d.query_params or d.header_params or d.body_params for d in every):
        statuses.add(422)
    if IDEMPOTENCY in calls:
        statuses.add(409)
    if calls & SERVICES:
        statuses.add(503)
    return statuses


def _error_response(description: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def complete(spec: dict[str, Any], routes: list[RouteContext]) -> dict[str, Any]:
    """Add each route's implied errors and put every error response in the error shape."""
    for route in routes:
        for method in route.methods or ():
            operation = spec["paths"][route.path_format][method.lower()]
            responses: dict[str, Any] = operation["responses"]
            for implied in implied_errors(route):
                responses.setdefault(str(implied), _error_response(DESCRIPTIONS[implied]))
            for code, response in responses.items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if int(code) >= 400 and (schema is None or schema.get("$ref") in VALIDATION_REFS):
                    responses[code] = _error_response(response["description"])
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR_SCHEMA] = ErrorBody.model_json_schema()
    for name in FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    return spec


def document_errors(app: FastAPI) -> None:
    """Make `app.openapi()` (and so /openapi.json and /docs) return the completed document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            routes = [
                r
                for r in iter_route_contexts(app.routes)
                if isinstance(r.original_route, APIRoute) and r.include_in_schema
            ]
            app.openapi_schema = complete(generate(), routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
