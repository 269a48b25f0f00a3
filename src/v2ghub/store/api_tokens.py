"""Bearer tokens of the web API, and the role each one has.

A token is 43 random URL-safe characters (256 bits) after the prefix ``v2g_``; it is shown
once when made and only its SHA-256 is stored. A hash of that much randomness cannot be
reversed or guessed, so a fast hash is safe here (unlike a password, which needs scrypt),
and a request's token is found by its hash in one indexed read.

Roles: ``admin`` sees and changes everything; ``operator`` sees and steers only its sites
(``site_ids``); ``grid`` reads fleet totals and the flexibility envelope and makes or
cancels grid events, but sees no owner's data; ``owner`` sees only its own sessions and
earnings (sessions whose id token is ``owner_id``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from v2ghub.store import schema
from v2ghub.store.checks import check_aware
from v2ghub.store.roles import Role as Role  # noqa: PLC0414 - re-exported for its users

TOKEN_PREFIX = "v2g_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


@dataclass(frozen=True)
class ApiToken:
    """A token's name and what it may see (never the token itself)."""

    name: str
    role: Role
    site_ids: tuple[str, ...]
    owner_id: str | None
    created_at: datetime
    revoked_at: datetime | None = None


def new_token() -> str:
    """A fresh bearer token (shown once)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the store keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_token_scope(
    name: str, role: Role, site_ids: tuple[str, ...], owner_id: str | None
) -> None:
    """Refuse a token that could not be used as asked: ``ValueError`` naming the option."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"token name {name!r}: 1 to 64 letters, digits and . _ @ - (starting with a "
            "letter or digit)"
        )
    if role is Role.OPERATOR and not site_ids:
        raise ValueError("--site: an operator token needs at least one site")
    if role is not Role.OPERATOR and site_ids:
        raise ValueError(f"--site: only an operator token has sites, not {role.value}")
    if role is Role.OWNER and not owner_id:
        raise ValueError("--owner: an owner token needs the owner's id (its id token)")
    if role is not Role.OWNER and owner_id:
        raise ValueError(f"--owner: only an owner token has an owner, not {role.value}")
    for site_id in site_ids:
        if not site_id or "," in site_id:
            raise ValueError(f"--site: {site_id!r} is not a site id")


def add_token(
    connection: Connection,
    name: str,
    *,
    role: Role,
    token: str,
    at: datetime,
    site_ids: tuple[str, ...] = (),
    owner_id: str | None = None,
) -> ApiToken:
    """Store a token's hash under ``name`` (which must be new)."""
    check_token_scope(name, role, site_ids, owner_id)
    check_aware("at", at)
    taken = connection.execute(
        sa.select(schema.api_tokens.c.name).where(schema.api_tokens.c.name == name)
    ).first()
    if taken is not None:
        raise ValueError(f"token name {name!r} is taken (revoke it first or choose another)")
    connection.execute(
        schema.api_tokens.insert().values(
            name=name,
            role=role.value,
            site_ids=",".join(site_ids),
            owner_id=owner_id,
            token_hash=token_hash(token),
            created_at=at,
        )
    )
    return ApiToken(name, role, site_ids, owner_id, at)


def token_by_secret(connection: Connection, token: str) -> ApiToken | None:
    """The valid (not revoked) token ``token``, or None."""
    columns = schema.api_tokens.c
    row = connection.execute(
        sa.select(schema.api_tokens).where(
            columns.token_hash == token_hash(token), columns.revoked_at.is_(None)
        )
    ).first()
    return None if row is None else _token(row)


def tokens(connection: Connection) -> list[ApiToken]:
    """Every token, revoked ones included, by name."""
    query = sa.select(schema.api_tokens).order_by(schema.api_tokens.c.name)
    return [_token(row) for row in connection.execute(query)]


def revoke_token(connection: Connection, name: str, *, at: datetime) -> bool:
    """Revoke the token ``name``; whether a valid one was revoked."""
    check_aware("at", at)
    columns = schema.api_tokens.c
    result = connection.execute(
        schema.api_tokens.update()
        .where(columns.name == name, columns.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return result.rowcount == 1


def _token(row: Row[Any]) -> ApiToken:
    return ApiToken(
        name=row.name,
        role=Role(row.role),
        site_ids=tuple(site for site in row.site_ids.split(",") if site),
        owner_id=row.owner_id,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
