"""`/console`: counts, live charts, a searchable table, timelines, replay buttons.

Browsers cannot send a Bearer header when navigating, so the console trades the token once, at
`POST /console/login`, for an HttpOnly, SameSite=Strict cookie holding an HMAC of it (see
`payhook.operators.auth`). Forms that change something carry a CSRF token and must come from
this origin. Pages are plain HTML forms and links; JavaScript only draws the live charts.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

import jinja2
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import TypeAdapter, ValidationError

from payhook.errors import ValidationFailed
from payhook.observability.metrics import pool_usage
from payhook.operators import auth
from payhook.operators.auth import ConsoleDep, TokenDep
from payhook.operators.router import OperatorsDep
from payhook.operators.schemas import ListQuery, Reason, SearchText
from payhook.runtime import RuntimeDep
from payhook.timefmt import isoformat_z
from payhook.transactions.models import TransactionStatus

HERE = Path(__file__).parent
STATIC = {"console.js": "text/javascript", "console.css": "text/css"}
SECURITY_HEADERS = {
    # Everything comes from this origin; nothing inline, nothing framed, nothing cached.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
}
PANEL_SIZE = 20

router = APIRouter(prefix="/console", include_in_schema=False)
templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, auto_reload=False
)
templates.filters["when"] = lambda moment: isoformat_z(moment, "seconds") if moment else "—"


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A template as an HTML page with the console's security headers."""
    html = templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


@router.get("")
async def dashboard(
    request: Request,
    token: TokenDep,
    operators: OperatorsDep,
    runtime: RuntimeDep,
    q: Annotated[SearchText | None, Query()] = None,
    status: TransactionStatus | None = None,
) -> Response:
    """The console, or its login form when the caller has no session."""
    if auth.console_operator(request, token) is None:
        return render("login.html", status_code=401)
    snapshot = await operators.snapshot(pool_usage(runtime.engine.pool))
    recent = await operators.page(ListQuery(q=q or None, status=status))
    failed = await operators.page(ListQuery(status=TransactionStatus.FAILED, limit=PANEL_SIZE))
    conflicted = await operators.page(ListQuery(conflicted=True, limit=PANEL_SIZE))
    return render(
        "dashboard.html",
        snapshot=snapshot,
        statuses=[s.value for s in TransactionStatus],
        recent=recent.items,
        failed=failed.items,
        conflicted=conflicted.items,
        q=q or "",
        status=status.value if status else "",
        csrf=auth.csrf_value(token),
    )


@router.post("/login")
async def login(request: Request, token: TokenDep) -> Response:
    """Trade the token for a session cookie."""
    form = await _form(request)
    if not auth.same_origin(request):
        return render("login.html", status_code=403, error="Log in from the console page.")
    if not auth.tokens_match(form.get("token", ""), token):
        return render("login.html", status_code=401, error="That is not the ADMIN_TOKEN.")
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(
        auth.SESSION_COOKIE,
        auth.session_value(token),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/console",
        max_age=12 * 3600,
    )
    return response


@router.post("/logout")
async def logout(request: Request, token: TokenDep, _: ConsoleDep) -> Response:
    auth.check_form_origin(request, token, await _form(request))
    response = RedirectResponse("/console", status_code=303)
    response.delete_cookie(auth.SESSION_COOKIE, path="/console")
    return response


@router.get("/transactions/{transaction_id}")
async def transaction_page(
    transaction_id: str,
    token: TokenDep,
    operator: ConsoleDep,
    operators: OperatorsDep,
    raw: bool = False,
) -> Response:
    """One transaction's timeline."""
    timeline = await operators.timeline(transaction_id, raw=raw)
    return render("timeline.html", timeline=timeline, raw=raw, csrf=auth.csrf_value(token))


@router.post("/transactions/{transaction_id}/retry")
async def retry(
    request: Request,
    transaction_id: str,
    token: TokenDep,
    operator: ConsoleDep,
    operators: OperatorsDep,
) -> Response:
    """The replay button: replay, then show the transaction."""
    form = await _form(request)
    auth.check_form_origin(request, token, form)
    await operators.retry_one(transaction_id, operator, _reason(form.get("reason")))
    return RedirectResponse(f"/console/transactions/{quote(transaction_id, safe='')}", 303)


@router.get("/api/stats")
async def stats(_: ConsoleDep, operators: OperatorsDep, runtime: RuntimeDep) -> dict[str, Any]:
    """What the live charts draw, polled every 2 s."""
    snapshot = await operators.snapshot(pool_usage(runtime.engine.pool))
    return {
        **runtime.metrics.recent.snapshot(),
        "by_status": snapshot.by_status,
        "due_backlog": snapshot.due_backlog,
        "oldest_due_age_seconds": round(snapshot.oldest_due_age_seconds, 3),
    }


@router.get("/static/{name}")
async def static(name: str, _: TokenDep) -> Response:
    """The console's two assets; public code, but only where the console exists."""
    if name not in STATIC:
        return Response(status_code=404)
    return Response(_asset(name), media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})


@cache
def _asset(name: str) -> bytes:
    return (HERE / "static" / name).read_bytes()


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form body as a dict of first values."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=20)
    return {key: values[0] for key, values in fields.items()}


_REASON: TypeAdapter[str] = TypeAdapter(Reason)


def _reason(value: str | None) -> str | None:
    """The form's reason under the API's rules (a NUL would reach PostgreSQL as a 503)."""
    if not value:
        return None
    try:
        return _REASON.validate_python(value)
    except ValidationError as exc:
        raise ValidationFailed(f"reason: {exc.errors()[0]['msg']}") from None
