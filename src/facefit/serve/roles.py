"""What each key's role may do: ``Needs.enrol`` and ``Needs.admin`` on a route, checked before its body is read.

``auth.ApiKeyGuard`` leaves the key's holder in the request's scope. FastAPI parses a request's body before
any dependency runs, so ``RoleRoute`` checks the role its ``Needs`` dependency names first, before the body;
the dependency stays on the route, so the rule is declared where the route is.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.routing import APIRoute
from starlette.responses import Response

from facefit.serve.auth import CLIENT
from facefit.serve.keys import Client, Role


def check_role(scope: dict[str, Any], role: Role) -> None:
    """403 unless the request's key has ``role`` or a higher one; a server without keys lets everyone."""
    client: Client | None = scope.get(CLIENT)
    if client is not None and client.role < role:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs a key with the {role.name} role; the key of "
                                                       f"{client.name!r} has the {client.role.name} role")


def _needs(role: Role) -> Callable[[Request], None]:
    def check(request: Request) -> None:
        check_role(request.scope, role)

    check.role = role  # type: ignore[attr-defined] - read by RoleRoute
    return check


class Needs:
    """Route dependencies for the roles above ``read`` (every key may read)."""

    enrol = Depends(_needs(Role.enrol))
    admin = Depends(_needs(Role.admin))


class RoleRoute(APIRoute):
    """A route whose ``Needs`` role is checked before the request's body is read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        roles = [d.dependency.role for d in self.dependencies if hasattr(d.dependency, "role")]
        if not roles:
            return handler
        needed = max(roles)

        async def checked(request: Request) -> Response:
            check_role(request.scope, needed)
            return await handler(request)

        return checked
