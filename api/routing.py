"""What the request pipeline knows about a route before the route runs.

The body limit, authentication before buffering, the scope of an Idempotency-Key and the audit of
personal-data reads all sit in middleware, in front of routing, yet depend on which route a request
is for. `route_for` answers that as the router will (first route whose path and method match),
from a table built once from the app's routes, with what each route declares through its
dependencies: whether it needs a signed-in user, takes a file upload, or reads personal data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, params
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import compile_path
from starlette.types import Scope

# Where the table lives on the app, built at the first request (every router is included by then).
_TABLE = "bankflow_route_table"
# Where a request's scope keeps its route once found.
_FOUND = "bankflow.route"


@dataclass(frozen=True)
class RouteInfo:
    template: str  # the path as declared, e.g. /v1/members/{member_number}
    methods: frozenset[str]
    route: APIRoute
    uploads: bool  # takes a file (multipart), so its body limit is the upload limit

    # What depends_on found, per dependency asked about.
    _found: dict[Callable[..., Any], bool] = field(default_factory=dict, compare=False)

    def depends_on(self, call: Callable[..., Any]) -> bool:
        """True when the route or any of its dependencies uses `call` as a dependency (the
        middleware asks on every request; the tree is walked once per route)."""
        found = self._found.get(call)
        if found is None:
            found = any(dep.call is call for dep in _dependencies(self.route.dependant))
            self._found[call] = found
        return found


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for dep in dependant.dependencies:
        yield dep
        yield from _dependencies(dep)


# A route's regex, and the literal start of its path (up to its first parameter), which a
# request path must start with before the regex is worth running.
Entry = tuple[str, re.Pattern[str], RouteInfo]


def _table(app: FastAPI) -> list[Entry]:
    table: list[Entry] | None = getattr(app.state, _TABLE, None)
    if table is None:
        table = []
        for context in iter_route_contexts(app.router.routes):
            route = context.original_route
            if not isinstance(route, APIRoute) or context.path is None:
                continue
            regex, _, _ = compile_path(context.path)
            uploads = any(
                isinstance(p.field_info, params.File) for p in route.dependant.body_params
            )
            info = RouteInfo(context.path, frozenset(route.methods or ()), route, uploads)
            table.append((context.path.split("{", 1)[0], regex, info))
        setattr(app.state, _TABLE, table)
    return table


def route_for(scope: Scope) -> RouteInfo | None:
    """The API route that will serve this request, or None (no such path, docs, static files).
    Looked up once per request (three layers ask), then kept in the request's scope."""
    if _FOUND in scope:
        found: RouteInfo | None = scope[_FOUND]
        return found
    app: FastAPI = scope["app"]
    path, method = scope["path"], scope["method"]
    found = next(
        (
            info
            for start, regex, info in _table(app)
            if path.startswith(start) and method in info.methods and regex.match(path)
        ),
        None,
    )
    scope[_FOUND] = found
    return found
