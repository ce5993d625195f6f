"""Unknown query parameters are a 400: a misspelt ``radius=3000`` must not silently mean the default."""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyQuery

CHECKED_PREFIX = "/api/v1/"  # Nightjar's own API; the Lasair-compatible routes take what Lasair's clients send


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters an endpoint takes, its dependencies' included."""
    names = {p.alias for p in dependant.query_params}
    if isinstance(dependant.call, APIKeyQuery):  # the ``?token=`` form of authentication
        names.add(dependant.call.model.name)
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def known_query_parameters(request: Request) -> None:
    """Refuse a request to Nightjar's API whose query string names a parameter its endpoint does not take."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.url.path.startswith(CHECKED_PREFIX):
        return
    allowed = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) or "none"
        raise HTTPException(
            status_code=400,
            detail=f"unknown query parameter(s): {', '.join(unknown)}; {request.url.path} takes: {takes}",
        )
