"""The operator dashboard: ``/`` (the page), ``/login`` and ``/logout`` (the
``v2ghub_token`` cookie), and ``/static/...`` (its script, its style and plotly.js, served
from the ``plotly`` package: never from a CDN).

The page is server-rendered with only the cards the token's role may see, then filled and
kept live by ``static/dashboard.js`` from the JSON API and the feed
(:mod:`v2ghub.api.feed`). No build step: the files are served as they are in the package.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from string import Template
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from v2ghub import __version__
from v2ghub.api.auth import COOKIE, Principal, refuse
from v2ghub.api.context import ApiContext, context
from v2ghub.store.api_tokens import Role

router = APIRouter(include_in_schema=False)
Api = Annotated[ApiContext, Depends(context)]

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
PLOTLY_JS = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
PLOTLY_VERSION = metadata.version("plotly")
LOGIN_BODY_MAX_BYTES = 4096

SECURITY_HEADERS = {
    # plotly.js sets styles inline; everything else comes from this server.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

LIVE = (Role.ADMIN, Role.OPERATOR, Role.GRID)
"""Roles that see the fleet and the twin run and may make grid events."""
NEAR = (Role.ADMIN, Role.OPERATOR)
"""Roles that see vehicles and stations (the grid role sees totals only)."""
CARD_ROLES: dict[str, tuple[Role, ...]] = {
    "summary": LIVE,
    "power": LIVE,
    "sites": LIVE,
    "envelope": (Role.ADMIN, Role.GRID),
    "vehicles": NEAR,
    "events": LIVE,
    "regulation": LIVE,
    "stations": NEAR,
    "today": NEAR,
}
"""The live view's cards and the roles that see each."""
LIVE_LAYOUT: tuple[tuple[tuple[str, ...], ...], ...] = (
    (("summary",),),
    (("power",), ("sites", "envelope")),
    (("regulation",),),
    (("vehicles",), ("events",)),
    (("stations",), ("today",)),
)
"""Rows of columns of cards (a column stacks its cards); a column whose cards the role may
not see is left out, and the others widen to fill the row."""


@dataclass(frozen=True)
class StaticFile:
    path: Path
    media_type: str
    cache_control: str


STATIC = {
    # The URL carries plotly's version, so a browser may keep it for a year.
    "plotly.min.js": StaticFile(
        PLOTLY_JS, "text/javascript", "public, max-age=31536000, immutable"
    ),
    "dashboard.css": StaticFile(HERE / "static" / "dashboard.css", "text/css", "no-cache"),
    # The page's script (an ES module) and those it imports.
    **{
        name: StaticFile(HERE / "static" / name, "text/javascript", "no-cache")
        for name in (
            "dashboard.js",
            "common.js",
            "cards.js",
            "events.js",
            "power.js",
            "regulation.js",
            "run.js",
        )
    },
}


@functools.cache
def _template(name: str) -> Template:
    return Template((TEMPLATES / f"{name}.html").read_text(encoding="utf-8"))


@functools.cache
def _fragment(name: str) -> str:
    return (TEMPLATES / f"{name}.html").read_text(encoding="utf-8")


def _page(content: str, *, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status_code, headers=SECURITY_HEADERS)


def _script_json(document: object) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``</script>``)."""
    return json.dumps(document).replace("<", "\\u003c").replace(">", "\\u003e")


def dashboard_html(api: ApiContext, caller: Principal) -> str:
    """The page for ``caller``: only the cards its role may see."""
    role = caller.role
    live = api.status is not None and role is not Role.OWNER
    run = api.run_folder is not None and role in LIVE
    live_cards = _live_cards(role)
    offset = api.local(api.now()).utcoffset()
    config = {
        "role": role.value,
        "name": caller.name,
        "sites": list(caller.token.site_ids),
        "live": live,
        "run": run,
        "can_steer": role in LIVE,
        "utc_offset_s": int(offset.total_seconds()) if offset is not None else 0,
    }
    tabs = ""
    if live and run:
        tabs = _fragment("tabs")
    panels = []
    if role is Role.OWNER:
        panels.append(_panel("owner", _fragment("card_owner"), hidden=False))
    if live:
        panels.append(_panel("live", live_cards, hidden=False))
    if run:
        panels.append(_panel("run", _fragment("card_run"), hidden=live))
    return _template("page").substitute(
        version=html.escape(__version__),
        plotly_version=html.escape(PLOTLY_VERSION),
        config=_script_json(config),
        name=html.escape(caller.name),
        role=html.escape(role.value),
        tabs=tabs,
        panels="".join(panels),
    )


def _live_cards(role: Role) -> str:
    rows = []
    for layout_row in LIVE_LAYOUT:
        columns = []
        for column in layout_row:
            cards = [_fragment(f"card_{card}") for card in column if role in CARD_ROLES[card]]
            if cards:
                columns.append(f'<div class="column column-{column[0]}">{"".join(cards)}</div>')
        if columns:
            rows.append(f'<div class="row">{"".join(columns)}</div>')
    return "".join(rows)


def _panel(name: str, cards: str, *, hidden: bool) -> str:
    state = " hidden" if hidden else ""
    return f'<div class="panel" id="panel-{name}" data-panel="{name}"{state}>{cards}</div>'


def login_html(problem: str | None = None) -> str:
    message = f'<p class="problem" role="alert">{html.escape(problem)}</p>' if problem else ""
    return _template("login").substitute(version=html.escape(__version__), problem=message)


def _same_origin(request: Request) -> bool:
    """A form posted from this server's own page (or by a client that sends no Origin)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme == request.url.scheme and parts.netloc == request.headers.get("host")


async def _token_from_body(request: Request) -> str:
    body = await request.body()
    if len(body) > LOGIN_BODY_MAX_BYTES:
        raise refuse(413, "the login form is too large")
    text = body.decode("utf-8", errors="replace")
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            document = json.loads(text)
        except ValueError:
            raise refuse(422, "the body is not JSON", "token") from None
        value = document.get("token") if isinstance(document, dict) else None
        return value.strip() if isinstance(value, str) else ""
    values = parse_qs(text).get("token", [""])
    return values[0].strip()


@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request, api: Api) -> Response:
    """The dashboard, or a redirect to the login page without a valid token."""
    secret = request.cookies.get(COOKIE)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        secret = header[len("bearer ") :].strip()
    token = await run_in_threadpool(api.store.token, secret) if secret else None
    if token is None:
        response = RedirectResponse("/login", status_code=303)
        if request.cookies.get(COOKIE):
            response.delete_cookie(COOKIE, path="/")
        return response
    return _page(dashboard_html(api, Principal(token)))


@router.get("/login", response_class=HTMLResponse)
async def login_page() -> Response:
    return _page(login_html())


@router.post("/login")
async def login(request: Request, api: Api) -> Response:
    """Check the pasted token with the store; if valid, set the ``v2ghub_token`` cookie
    (HttpOnly, SameSite=Strict, Secure over HTTPS) and go to the dashboard."""
    if not _same_origin(request):
        raise refuse(403, "a login must come from this server's own page")
    secret = await _token_from_body(request)
    token = await run_in_threadpool(api.store.token, secret) if secret else None
    if token is None:
        problem = "Unknown or revoked token." if secret else "Paste a token."
        return _page(login_html(problem), status_code=401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        secret,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Forget the cookie and go back to the login page."""
    if not _same_origin(request):
        raise refuse(403, "a logout must come from this server's own page")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response


@functools.cache
def _etag(path: Path, size: int, modified_ns: int) -> str:
    return '"' + hashlib.sha256(f"{path}:{size}:{modified_ns}".encode()).hexdigest()[:32] + '"'


@router.get("/static/{name}")
async def static_file(name: str, request: Request) -> Response:
    """The dashboard's own files and plotly.js (from the installed ``plotly`` package)."""
    found = STATIC.get(name)
    if found is None or not found.path.is_file():
        raise refuse(404, f"no static file {name!r}")
    stat = found.path.stat()
    etag = _etag(found.path, stat.st_size, stat.st_mtime_ns)
    headers = {"Cache-Control": found.cache_control, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return FileResponse(found.path, media_type=found.media_type, headers=headers)
