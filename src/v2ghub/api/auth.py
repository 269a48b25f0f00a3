"""Who is asking: a bearer token (``Authorization: Bearer v2g_...``) or, for the dashboard
in a browser, the same token in the ``v2ghub_token`` cookie set by ``POST /login``.

Every refusal is a JSON error with no data: 401 without a valid token, 403 for a request
outside the token's role or sites. A write made with the cookie must carry a JSON body
(``Content-Type: application/json``), which a page of another site cannot send without
the browser asking first (and the cookie is ``SameSite=Strict`` anyway).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from v2ghub.api.context import ApiContext, context
from v2ghub.store.api_tokens import ApiToken, Role

COOKIE = "v2ghub_token"


@dataclass(frozen=True)
class Principal:
    """The token a request came with, and what it may see."""

    token: ApiToken

    @property
    def name(self) -> str:
        return self.token.name

    @property
    def role(self) -> Role:
        return self.token.role

    def sees_site(self, site_id: str) -> bool:
        return self.role in (Role.ADMIN, Role.GRID) or (
            self.role is Role.OPERATOR and site_id in self.token.site_ids
        )

    def steers_site(self, site_id: str) -> bool:
        return self.role in (Role.ADMIN, Role.GRID) or (
            self.role is Role.OPERATOR and site_id in self.token.site_ids
        )

    def site_filter(self) -> frozenset[str] | None:
        """The sites it may see; None for all."""
        if self.role is Role.OPERATOR:
            return frozenset(self.token.site_ids)
        if self.role is Role.OWNER:
            return frozenset()
        return None

    def actor(self) -> str:
        """How a change it makes is recorded: ``api:NAME``."""
        return f"api:{self.name}"


def refuse(status: int, detail: str, field: str | None = None) -> HTTPException:
    """An HTTP error whose JSON body is ``{"detail": ..., "field": ...}``."""
    return HTTPException(status_code=status, detail={"detail": detail, "field": field})


def _bearer(request: Request) -> tuple[str | None, bool]:
    """The token and whether it came in the cookie."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise refuse(401, "the Authorization header must be 'Bearer <token>'")
        return value.strip(), False
    cookie = request.cookies.get(COOKIE)
    return (cookie, True) if cookie else (None, False)


_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="a token from `v2ghub token add NAME --role ROLE`",
)


async def principal(
    request: Request,
    api: Annotated[ApiContext, Depends(context)],
    _declared: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
) -> Principal:
    """The request's token, or a 401. (``_declared`` only puts the bearer scheme in the
    OpenAPI schema; the header is read here, to say what is wrong with it.)"""
    secret, from_cookie = _bearer(request)
    if secret is None:
        raise refuse(401, "a bearer token is needed (v2ghub token add NAME --role ROLE)")
    token = await run_in_threadpool(api.store.token, secret)
    if token is None:
        raise refuse(401, "unknown or revoked token")
    if (
        from_cookie
        and request.method not in ("GET", "HEAD")
        and not request.headers.get("content-type", "").startswith("application/json")
    ):
        raise refuse(403, "a change made with the dashboard's cookie must send JSON")
    return Principal(token)


Caller = Annotated[Principal, Depends(principal)]


def allow(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the caller if it has one of ``roles``, else a 403. Checked before the
    request's body, so a role that may not write learns nothing from a body's errors."""

    async def allowed(caller: Caller) -> Principal:
        require(caller, *roles)
        return caller

    return allowed


def require(caller: Principal, *roles: Role) -> None:
    """403 unless the caller has one of ``roles``."""
    if caller.role not in roles:
        allowed = ", ".join(role.value for role in roles)
        raise refuse(403, f"the {caller.role.value} role may not do this (only {allowed})")


def require_site(caller: Principal, site_id: str, *, steer: bool = False) -> None:
    """403 unless the caller may see (or, with ``steer``, change) ``site_id``."""
    allowed = caller.steers_site(site_id) if steer else caller.sees_site(site_id)
    if not allowed:
        raise refuse(403, f"token {caller.name!r} has no access to site {site_id!r}", "site_id")
