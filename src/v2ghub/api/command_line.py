"""The parser of ``v2ghub token`` (make, list and revoke the web API's bearer tokens): its
options and help, without the store, so that ``v2ghub --help`` stays light;
:mod:`v2ghub.api.commands` runs it."""

from __future__ import annotations

import argparse

from v2ghub.live.command_line import store_options
from v2ghub.store.roles import Role

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
