"""Operator authentication: `Authorization: Bearer <ADMIN_TOKEN>`, or the console's session cookie.

Without ADMIN_TOKEN every operator route answers 404, so an unconfigured deployment shows no
operator surface at all. The API accepts only the header: a cookie is sent by browsers on their
own, so accepting it on the JSON API would open it to cross-site requests. The console accepts
the cookie, which holds an HMAC of the token (not the token), is HttpOnly and SameSite=Strict;
its state-changing forms also carry a CSRF token and must come from the service's own origin.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, Request

from payhook.errors import AdminAuthRequired, Forbidden, NotFound
from payhook.operators.service import Operator
from payhook.runtime import RuntimeDep

SESSION_COOKIE = "payhook_console"
# The name given at login, for the audit log; not a credential (X-Operator is not one either).
OPERATOR_COOKIE = "payhook_operator"
DEFAULT_ACTOR = "admin"
CONSOLE_ACTOR = "console"


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


def console_operator(request: Request, token: str) -> Operator | None:
    """The console's check: the Bearer header or the session cookie; None when neither."""
    cookie = request.cookies.get(SESSION_COOKIE, "")
    if _bearer_matches(request, token) or tokens_match(cookie, session_value(token)):
        return Operator(console_actor(request))
    return None


def require_console(request: Request, token: TokenDep) -> Operator:
    """The console's check for everything but the page itself (which offers the login form)."""
    operator = console_operator(request, token)
    if operator is None:
        raise AdminAuthRequired("Log in at /console first.")
    return operator


def session_value(token: str) -> str:
    """What the session cookie holds: an HMAC of the token, so the cookie is not the token."""
    return hmac.new(token.encode(), b"payhook-console-session", hashlib.sha256).hexdigest()


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


AdminDep = Annotated[Operator, Depends(require_admin)]
ConsoleDep = Annotated[Operator, Depends(require_console)]
