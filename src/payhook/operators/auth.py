"""Operator authentication: `Authorization: Bearer <ADMIN_TOKEN>`, or the console's session cookie.

Without ADMIN_TOKEN every operator route answers 404, so an unconfigured deployment shows no
operator surface at all. The API accepts only the header: a cookie is sent by browsers on their
own, so accepting it on the JSON API would open it to cross-site requests.

The console trades the token, once, for a session: a random secret in an HttpOnly,
SameSite=Strict cookie, signed with the token (rotating ADMIN_TOKEN ends every session), whose
SHA-256 is stored with its end time (`console_sessions`): a session ends after SESSION_SECONDS
whatever the browser does with its cookie, and logging out deletes it. Failed logins are logged
and throttled per client address (`LoginThrottle`). State-changing forms also carry a CSRF token
and must come from the service's own origin.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import unquote

import structlog
from fastapi import Depends, Request

from payhook.errors import AdminAuthRequired, Forbidden, NotFound
from payhook.operators.service import Operator
from payhook.runtime import Runtime, RuntimeDep

SESSION_COOKIE = "payhook_console"
# The name given at login, for the audit log; not a credential (X-Operator is not one either).
OPERATOR_COOKIE = "payhook_operator"
SESSION_SECONDS = 12 * 3600
DEFAULT_ACTOR = "admin"
CONSOLE_ACTOR = "console"

log = structlog.get_logger(__name__)


def configured_token(runtime: RuntimeDep) -> str:
    """ADMIN_TOKEN, or 404: without it the operator routes do not exist."""
    token = runtime.settings.admin_token_value
    if token is None:
        raise NotFound("Not found.")
    return token


TokenDep = Annotated[str, Depends(configured_token)]


def require_admin(request: Request, token: TokenDep) -> Operator:
    """The API's check: the Bearer header, compared in constant time."""
    if not _bearer_matches(request, token):
        raise AdminAuthRequired("Send Authorization: Bearer <ADMIN_TOKEN>.")
    return Operator(actor_from(request))


async def console_operator(request: Request, token: str) -> Operator | None:
    """The console's check: the Bearer header or a live session; None when neither."""
    if _bearer_matches(request, token):
        return Operator(console_actor(request))
    secret = session_secret(request.cookies.get(SESSION_COOKIE, ""), token)
    if secret is None:
        return None
    repository = _runtime(request).operators.repository
    if not await repository.session_active(_hash(secret), datetime.now(UTC)):
        return None
    return Operator(console_actor(request))


async def require_console(request: Request, token: TokenDep) -> Operator:
    """The console's check for everything but the page itself (which offers the login form)."""
    operator = await console_operator(request, token)
    if operator is None:
        raise AdminAuthRequired("Log in at /console first.")
    return operator


async def open_session(request: Request, token: str) -> str:
    """A new session, stored with its end time; returns the cookie's value."""
    secret = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    await _runtime(request).operators.repository.open_session(
        _hash(secret), now, now + timedelta(seconds=SESSION_SECONDS)
    )
    return f"{secret}.{_sign(secret, token)}"


async def close_session(request: Request, token: str) -> None:
    """Log out: the session is deleted, so its cookie no longer works anywhere."""
    secret = session_secret(request.cookies.get(SESSION_COOKIE, ""), token)
    if secret is not None:
        await _runtime(request).operators.repository.close_session(_hash(secret))


def session_secret(cookie: str, token: str) -> str | None:
    """The session secret of a cookie signed with this token, else None."""
    secret, _, signature = cookie.partition(".")
    if not secret or not tokens_match(signature, _sign(secret, token)):
        return None
    return secret


def _sign(secret: str, token: str) -> str:
    return hmac.new(token.encode(), f"session:{secret}".encode(), hashlib.sha256).hexdigest()


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def client_of(request: Request) -> str:
    """The client's address as TRUSTED_PROXIES lets payhook see it (for logs and throttling)."""
    peer = request.client.host if request.client else None
    address = _runtime(request).allowlist.client_address(
        peer, request.headers.getlist("x-forwarded-for")
    )
    return str(address) if address is not None else "unknown"


def csrf_value(token: str) -> str:
    """The hidden field every console form carries; another site cannot read or compute it."""
    return hmac.new(token.encode(), b"payhook-console-csrf", hashlib.sha256).hexdigest()


def check_form_origin(request: Request, token: str, form: dict[str, str]) -> None:
    """Refuse a console POST from another origin or without the CSRF token."""
    if not same_origin(request):
        raise Forbidden("The form was posted from another origin.")
    if not tokens_match(form.get("csrf", ""), csrf_value(token)):
        raise Forbidden("The form's CSRF token is missing or wrong. Reload the console.")


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin."""
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


def tokens_match(given: str, expected: str) -> bool:
    """Constant-time comparison, so response times do not reveal how much of a guess was right."""
    return hmac.compare_digest(given.encode(), expected.encode())


def actor_from(request: Request) -> str:
    """X-Operator, trimmed to something printable, or the default actor."""
    return operator_name(request.headers.get("x-operator", "")) or DEFAULT_ACTOR


def console_actor(request: Request) -> str:
    """X-Operator, else the name given at login, else "console" (never the API's "admin")."""
    header = operator_name(request.headers.get("x-operator", ""))
    return header or login_name(request) or CONSOLE_ACTOR


def login_name(request: Request) -> str | None:
    """The name the operator gave at login, if any."""
    return operator_name(unquote(request.cookies.get(OPERATOR_COOKIE, "")))


def operator_name(value: str) -> str | None:
    """A name for the audit log: trimmed, at most 64 printable characters, or None."""
    name = value.strip()[:64]
    return name if name and name.isprintable() else None


def _bearer_matches(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return tokens_match(given.strip(), token)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


AdminDep = Annotated[Operator, Depends(require_admin)]
ConsoleDep = Annotated[Operator, Depends(require_console)]
