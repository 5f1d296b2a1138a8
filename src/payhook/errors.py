"""Errors that payhook answers with, as RFC 9457 problem+json.

PayhookError                 base: a status code, a title and a detail
├── InvalidRequest           400  the body is not JSON payhook can read
├── SignatureInvalid         401  the webhook signature is missing, wrong or stale
├── AdminAuthRequired        401  an operator endpoint without the right ADMIN_TOKEN
├── Forbidden                403  the client address may not post webhooks, or a console form
│                                 came from another origin or without its token
├── NotFound                 404  no such transaction (or operator endpoints are not enabled)
├── RequestTimeout           408  the body did not arrive in time
├── TransactionConflict      409  same transaction_id, different content
├── NotReplayable            409  a replay of a transaction that is not FAILED
├── PayloadTooLarge          413  body over the limit
├── UnsupportedMediaType     415  body is not application/json
├── ValidationFailed         422  JSON, but a field is missing or wrong
├── TooManyRequests          429  too many failed console logins: wait Retry-After
└── ServiceUnavailable       503  storage is down: retry later, nothing was stored
"""

from __future__ import annotations

from typing import Any, ClassVar

from starlette.responses import Response

from payhook.jsonfmt import json_response
from payhook.transactions.schemas import Problem


class PayhookError(Exception):
    """Root of every error payhook turns into an HTTP answer."""

    status_code: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def headers(self) -> dict[str, str]:
        return {}

    def problem(self) -> dict[str, Any]:
        slug = self.title.lower().replace(" ", "-")
        return {
            "type": f"https://payhook.dev/problems/{slug}",
            "title": self.title,
            "status": self.status_code,
            "detail": self.detail,
            **self.extra,
        }


class InvalidRequest(PayhookError):
    status_code = 400
    title = "Invalid request"


class SignatureInvalid(PayhookError):
    status_code = 401
    title = "Signature invalid"

    def headers(self) -> dict[str, str]:
        # RFC 9110 requires a challenge on every 401; the scheme names what the caller lacks.
        return {"WWW-Authenticate": 'Signature realm="payhook-webhooks"'}


class AdminAuthRequired(PayhookError):
    status_code = 401
    title = "Authentication required"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="payhook-operators"'}


class Forbidden(PayhookError):
    status_code = 403
    title = "Forbidden"


class NotFound(PayhookError):
    status_code = 404
    title = "Not found"


class RequestTimeout(PayhookError):
    status_code = 408
    title = "Request timeout"

    def headers(self) -> dict[str, str]:
        # The rest of the body may still be on its way: end the connection, do not wait for it.
        return {"Connection": "close"}


class TransactionConflict(PayhookError):
    status_code = 409
    title = "Transaction conflict"


class NotReplayable(PayhookError):
    status_code = 409
    title = "Not replayable"


class PayloadTooLarge(PayhookError):
    status_code = 413
    title = "Payload too large"

    def headers(self) -> dict[str, str]:
        # Up to megabytes may follow: end the connection rather than read and discard them.
        return {"Connection": "close"}


class UnsupportedMediaType(PayhookError):
    status_code = 415
    title = "Unsupported media type"


class ValidationFailed(PayhookError):
    status_code = 422
    title = "Validation failed"

    @classmethod
    def of(cls, errors: list[dict[str, str]]) -> ValidationFailed:
        """The error naming each field and what is wrong with it, in `detail` and `errors`."""
        detail = "; ".join(f"{error['field']}: {error['message']}" for error in errors)
        return cls(detail, errors=errors)


class TooManyRequests(PayhookError):
    status_code = 429
    title = "Too many requests"

    def __init__(self, detail: str, retry_after_seconds: int, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after_seconds = retry_after_seconds

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class ServiceUnavailable(PayhookError):
    status_code = 503
    title = "Service unavailable"
    retry_after_seconds: ClassVar[int] = 5

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


def render_problem(error: PayhookError) -> Response:
    """The problem+json response for `error`, with its headers (Retry-After, WWW-Authenticate)."""
    return render_problem_body(error.problem(), error.status_code, error.headers())


def render_problem_body(
    problem: dict[str, Any], status_code: int, headers: dict[str, str]
) -> Response:
    """A problem+json response, written through the documented Problem model."""
    return json_response(
        Problem.model_validate(problem),
        status_code,
        media_type="application/problem+json",
        headers=headers,
    )
