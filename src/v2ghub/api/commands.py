"""``v2ghub token``: make, list and revoke the web API's bearer tokens (its options are
parsed by :mod:`v2ghub.api.command_line`).

A store that cannot take a write (a full or read-only disk) is one line, as in ``station
add``: the write was rolled back whole, so no token is half-made or half-revoked, and a
token that was not stored is never printed."""

from __future__ import annotations

import argparse

from rich.console import Console

from v2ghub.errors import InputError
from v2ghub.live.clock import SystemClock
from v2ghub.store.api_tokens import Role, new_token
from v2ghub.store.database import StorageError
from v2ghub.store.repository import Store


def run_token_command(args: argparse.Namespace, console: Console) -> int:
    """Run ``token add|list|revoke``; the exit status."""
    try:
        return _token_command(args, console)
    except StorageError as error:
        raise InputError(str(error)) from None


def _token_command(args: argparse.Namespace, console: Console) -> int:
    now = SystemClock().now()
    try:
        store = Store.open(data_dir=args.data_dir, database_url=args.database_url)
    except ValueError as error:
        raise InputError(str(error)) from error
    with store:
        if args.token_command == "list":
            for token in store.tokens():
                scope = ", ".join(token.site_ids) or token.owner_id or "all"
                state = "revoked" if token.revoked_at is not None else "valid"
                console.print(
                    f"{token.name}  {token.role.value}  {scope}  {state}  "
                    f"made {token.created_at:%Y-%m-%d %H:%M} UTC",
                    markup=False,
                    highlight=False,
                )
            return 0
        if args.token_command == "revoke":
            if not store.revoke_token(args.name, at=now):
                raise InputError(f"no valid token named {args.name!r}")
            console.print(f"token {args.name}: revoked", markup=False, highlight=False)
            return 0
        secret = new_token()
        try:
            store.add_token(
                args.name,
                role=Role(args.role),
                token=secret,
                at=now,
                site_ids=tuple(args.sites),
                owner_id=args.owner,
            )
        except ValueError as error:
            raise InputError(str(error)) from error
        console.print(
            f"token {args.name} ({args.role}): {secret}\n"
            "(shown once: send it as 'Authorization: Bearer <token>'; only its hash is stored)",
            markup=False,
            highlight=False,
        )
    return 0
