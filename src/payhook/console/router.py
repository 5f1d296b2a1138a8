"""`/console`: counts, live charts, a searchable table, timelines, replay buttons.

Browsers cannot send a Bearer header when navigating, so the console trades the token once, at
`POST /console/login`, for a server-side session in an HttpOnly, SameSite=Strict cookie (see
`payhook.operators.auth`); failed logins are logged and throttled. Forms that change something
carry a CSRF token and must come from this origin. Pages are plain HTML forms and links;
JavaScript only draws the live charts.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
import structlog
from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from payhook.db import STORAGE_ERRORS
from payhook.errors import (
    InvalidRequest,
    NotFound,
    PayhookError,
    ServiceUnavailable,
    TooManyRequests,
    ValidationFailed,
)
from payhook.jsonfmt import plain_decimal
from payhook.observability.metrics import pool_usage
from payhook.operators import auth
from payhook.operators.auth import ConsoleDep, TokenDep
from payhook.operators.schemas import Cursor, ListQuery, ProviderQuery, Reason, SearchText
from payhook.runtime import OperatorsDep, Runtime, RuntimeDep, get_runtime
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
RECENT_SIZE = 50

log = structlog.get_logger(__name__)
templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, auto_reload=False
)
# A path segment with everything escaped, "/" too: an id such as "x/../../transactions/y" must
# stay one segment, or a link or form built from it would name another transaction.
templates.filters["segment"] = lambda value: quote(str(value), safe="")
templates.filters["when"] = lambda moment: isoformat_z(moment, "seconds") if moment else "—"
templates.filters["amount"] = plain_decimal


def render(
    template: str, status_code: int = 200, headers: dict[str, str] | None = None, **context: Any
) -> HTMLResponse:
    """A template as an HTML page with the console's security headers."""
    html = templates.get_template(template).render(**context)
    return HTMLResponse(
        html, status_code=status_code, headers={**SECURITY_HEADERS, **(headers or {})}
    )


class ConsolePage(APIRoute):
    """A console page: errors are answered as a page a person can act on, not as JSON.

    Without ADMIN_TOKEN the console does not exist, and its 404 stays the API's.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except PayhookError as exc:
                if isinstance(exc, NotFound) and _console_disabled(request):
                    raise
                return error_page(request, exc)
            except RequestValidationError as exc:
                detail = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors())
                return error_page(request, ValidationFailed(detail))
            except STORAGE_ERRORS:
                return error_page(request, ServiceUnavailable("Storage is unavailable."))

        return page


def error_page(request: Request, error: PayhookError) -> HTMLResponse:
    """The error as an HTML page, with its status and headers (Retry-After, WWW-Authenticate)."""
    if error.status_code == 401:
        return render("login.html", 401, error.headers(), error="Log in first.", name="")
    return render(
        "error.html",
        error.status_code,
        error.headers(),
        error=error,
        # A link to the transaction as it is now, when it exists (a stale Replay button's 409),
        # of the provider the button named (else another provider's row of that id opened).
        transaction_id=error.extra.get("transaction_id") if error.status_code == 409 else None,
        provider=request.query_params.get("provider"),
    )


def _console_disabled(request: Request) -> bool:
    return get_runtime(request).settings.admin_token_value is None


class DashboardQuery(BaseModel):
    """The dashboard's search and its three panels' positions; empty values mean unset."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    q: SearchText | None = None
    status: TransactionStatus | None = None
    cursor: Cursor | None = None
    failed_cursor: Cursor | None = None
    conflicts_before: int | None = Field(None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value != ""}
        return data

    def link(self, **changes: str | int | None) -> str:
        """This page with some parameters changed (None drops one)."""
        values = {**self.model_dump(mode="json", exclude_none=True), **changes}
        return "/console?" + urlencode({k: v for k, v in values.items() if v is not None})


router = APIRouter(include_in_schema=False)
pages = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsolePage)


@pages.get("")
async def dashboard(
    request: Request,
    token: TokenDep,
    operators: OperatorsDep,
    runtime: RuntimeDep,
    query: Annotated[DashboardQuery, Query()],
) -> Response:
    """The console, or its login form when the caller has no session."""
    if await auth.console_operator(request, token) is None:
        return render("login.html", status_code=401, name=auth.login_name(request) or "")
    snapshot = await operators.snapshot(pool_usage(runtime.engine.pool))
    search = ListQuery(q=query.q, status=query.status, cursor=query.cursor, limit=RECENT_SIZE)
    failed = ListQuery(status=TransactionStatus.FAILED, cursor=query.failed_cursor)
    return render(
        "dashboard.html",
        snapshot=snapshot,
        statuses=[s.value for s in TransactionStatus],
        recent=await operators.page(search),
        failed=await operators.page(failed.model_copy(update={"limit": PANEL_SIZE})),
        conflicts=await operators.conflicts(query.conflicts_before, PANEL_SIZE),
        query=query,
        csrf=auth.csrf_value(token),
        destination=_destination(runtime),
    )


@pages.post("/login")
async def login(request: Request, token: TokenDep, operators: OperatorsDep) -> Response:
    """Trade the token for a session cookie; remember the name given, for the audit log.
    Failed logins are logged and throttled per client address."""
    client = auth.client_of(request)
    try:
        operators.login_throttle.check(client)
    except TooManyRequests as exc:
        error = exc.detail
        return render("login.html", 429, exc.headers(), error=error, name="")
    form = await _form(request)
    name = auth.operator_name(form.get("name", "")) or ""
    if not auth.same_origin(request):
        error = "Log in from the console page."
        return render("login.html", status_code=403, error=error, name=name)
    if not auth.tokens_match(form.get("token", ""), token):
        failures = operators.login_throttle.failed(client)
        log.warning("console.login_failed", client=client, failures_in_window=failures)
        error = "That is not the ADMIN_TOKEN."
        return render("login.html", status_code=401, error=error, name=name)
    log.info("console.logged_in", client=client)
    response = RedirectResponse("/console", status_code=303)
    session = await auth.open_session(request, token)
    _set_cookie(request, response, auth.SESSION_COOKIE, session, auth.SESSION_SECONDS)
    if name:
        _set_cookie(request, response, auth.OPERATOR_COOKIE, quote(name), 90 * 86400)
    return response


def _set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    secure = request.url.scheme == "https"
    response.set_cookie(
        name, value, max_age=age, httponly=True, samesite="strict", secure=secure, path="/console"
    )


@pages.post("/logout")
async def logout(request: Request, token: TokenDep, _: ConsoleDep) -> Response:
    auth.check_form_origin(request, token, await _form(request))
    await auth.close_session(request, token)
    response = RedirectResponse("/console", status_code=303)
    response.delete_cookie(auth.SESSION_COOKIE, path="/console")
    return response


@pages.get("/transactions/{transaction_id:path}")
async def transaction_page(
    transaction_id: str,
    token: TokenDep,
    operator: ConsoleDep,
    operators: OperatorsDep,
    raw: bool = False,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    provider: ProviderQuery = None,
) -> Response:
    """One transaction's timeline, a page of events at a time."""
    timeline = await operators.timeline(transaction_id, provider, raw=raw, offset=offset)
    return render(
        "timeline.html", timeline=timeline, raw=raw, offset=offset, csrf=auth.csrf_value(token)
    )


@pages.post("/transactions/{transaction_id:path}/retry")
async def retry(
    request: Request,
    transaction_id: str,
    token: TokenDep,
    operator: ConsoleDep,
    operators: OperatorsDep,
    provider: ProviderQuery = None,
) -> Response:
    """The replay button: replay, then show the transaction."""
    form = await _form(request)
    auth.check_form_origin(request, token, form)
    await operators.retry_one(transaction_id, provider, operator, _reason(form.get("reason")))
    page = f"/console/transactions/{quote(transaction_id, safe='')}"
    return RedirectResponse(f"{page}?provider={quote(provider)}" if provider else page, 303)


router.include_router(pages)


@router.get("/console/api/stats")
async def stats(_: ConsoleDep, operators: OperatorsDep, runtime: RuntimeDep) -> dict[str, Any]:
    """What the live charts draw, polled every 2 s."""
    snapshot = await operators.snapshot(pool_usage(runtime.engine.pool))
    return {
        **runtime.metrics.recent.snapshot(),
        "by_status": snapshot.by_status,
        "due_backlog": snapshot.due_backlog,
        "oldest_due_age_seconds": round(snapshot.oldest_due_age_seconds, 3),
        "destination": _destination(runtime),
    }


def _destination(runtime: Runtime) -> str | None:
    """The forwarding destination's health, when there is one."""
    if runtime.settings.destination_url is None:
        return None
    health = runtime.metrics.destination()
    return "forwarded by the workers" if health is None else health.summary()


@router.get("/console/static/{name}")
async def static(name: str, _: TokenDep) -> Response:
    """The console's two assets; public code, but only where the console exists."""
    if name not in STATIC:
        return Response(status_code=404)
    return Response(_asset(name), media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})


@cache
def _asset(name: str) -> bytes:
    return (HERE / "static" / name).read_bytes()


MAX_FORM_FIELDS = 20


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form body as a dict of first values (payhook.http_guards bounds its size)."""
    text = (await request.body()).decode("utf-8", "replace")
    try:
        fields = parse_qs(text, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        raise InvalidRequest(f"A console form has at most {MAX_FORM_FIELDS} fields.") from None
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
