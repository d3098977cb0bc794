"""The access matrix (README, "Security"): which roles may call which routes, read from the
routes' own role checks, so the document cannot drift from the code.

A route's roles are those its `require_roles` dependency lets through (admin passes every role
check); a route with a bearer token but no role check is open to any signed-in user, one with
neither is public. The data-dependent rule of the account routes (a GL account needs a ledger
reader) is declared on those routes as the OpenAPI extension `x-gl-account-roles`.
`bankflow access-matrix` prints the table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from inspect import getclosurevars

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase

from activities.tables import ROLES
from api import routes

PUBLIC = "public"
SIGNED_IN = "signed in"
GL_EXTENSION = "x-gl-account-roles"
ROLE_CHECK = "require_roles.<locals>.check"  # the dependency api.deps.require_roles returns


@dataclass(frozen=True)
class Access:
    """Who may call a route: `roles`, or everyone signed in, or anyone (`who`)."""

    who: str
    roles: frozenset[str] = frozenset()

    def allows(self, role: str) -> bool:
        return self.who != "roles" or role == "admin" or role in self.roles


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for dep in dependant.dependencies:
        yield dep
        yield from _dependencies(dep)


def route_access(route: APIRoute) -> Access:
    signed_in = False
    for dep in _dependencies(route.dependant):
        call = dep.call
        if call is not None and getattr(call, "__qualname__", "") == ROLE_CHECK:
            wanted = getclosurevars(call).nonlocals["wanted"]
            return Access("roles", frozenset(wanted))
        signed_in = signed_in or isinstance(dep.call, SecurityBase)
    return Access(SIGNED_IN if signed_in else PUBLIC)


def rows() -> list[tuple[str, Access]]:
    """(route group, access): routes of one tag with the same access share a row, tags in the
    routers' order. The account routes add a row for GL accounts."""
    found: dict[tuple[str, str, Access], list[str]] = {}
    for router in routes.ROUTERS:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                continue
            tag = str(route.tags[0]) if route.tags else "other"
            extra = route.openapi_extra or {}
            parts = [("", route_access(route))]
            if GL_EXTENSION in extra:
                gl = Access("roles", frozenset(extra[GL_EXTENSION]))
                parts = [(" (GL accounts)", gl), (" (member accounts)", parts[0][1])]
            for method in sorted(route.methods or ()):
                for part, access in parts:
                    found.setdefault((tag, part, access), []).append(f"{method} `{route.path}`")
    tags = list(dict.fromkeys(tag for tag, _, _ in found))
    ordered = sorted(found.items(), key=lambda item: tags.index(item[0][0]))
    return [
        (f"{tag}{part}{_who(access)}: {', '.join(ops)}", access)
        for (tag, part, access), ops in ordered
    ]


def _who(access: Access) -> str:
    return "" if access.who == "roles" else f" ({access.who})"


def markdown() -> str:
    """The matrix as a Markdown table: a row per route group, a column per role."""
    lines = ["| routes | " + " | ".join(ROLES) + " |", "| --- |" + " :-: |" * len(ROLES)]
    for label, access in rows():
        cells = ["✓" if access.allows(role) else "" for role in ROLES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
