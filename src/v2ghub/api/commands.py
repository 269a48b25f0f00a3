"""``v2ghub token``: make, list and revoke the web API's bearer tokens."""

from __future__ import annotations

import argparse

from rich.console import Console

from v2ghub.errors import InputError
from v2ghub.live.clock import SystemClock
from v2ghub.live.commands import store_options
from v2ghub.store.api_tokens import Role, new_token
from v2ghub.store.repository import Store

TOKEN_COMMANDS = ("token",)


def add_token_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``token add|list|revoke`` to the ``v2ghub`` parser."""
    token = commands.add_parser(
        "token",
        help="make, list and revoke the web API's bearer tokens",
        description="Bearer tokens of the web API and dashboard (`v2ghub serve`). A token is "
        "printed once and only its hash is stored. Roles: admin sees and changes everything; "
        "operator sees and steers only its --site(s); grid reads fleet totals and the "
        "envelope and makes or cancels grid events, but sees no owner's data; owner sees "
        "only its own sessions and earnings (--owner: the id token its sessions carry).",
    )
    actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="make a token and print it once")
    add.add_argument("name", metavar="NAME", help="the token's name (shown in the event log)")
    add.add_argument("--role", required=True, choices=[role.value for role in Role])
    add.add_argument(
        "--site",
        action="append",
        default=[],
        dest="sites",
        help="an operator's site (repeat for several)",
    )
    add.add_argument("--owner", help="an owner's id (the id token of its sessions)")
    listing = actions.add_parser("list", help="list tokens (never the tokens themselves)")
    revoke = actions.add_parser("revoke", help="revoke a token: it stops working at once")
    revoke.add_argument("name", metavar="NAME")
    for parser in (add, listing, revoke):
        store_options(parser)


def run_token_command(args: argparse.Namespace, console: Console) -> int:
    """Run ``token add|list|revoke``; the exit status."""
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
