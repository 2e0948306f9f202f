"""Requests refused before any view reads them, and failures of the database answered as 503.

Refused at the door, because each would otherwise end as a 500 somewhere deeper: a charset other than UTF-8
(Django decodes the query string and forms with it; `bz2_codec` is a valid Python codec), and a NUL character
in the path, the query string or a header (PostgreSQL refuses NUL in text, so `?tag=a%00b` or a token with a
NUL failed in the query).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.utils.http import parse_header_parameters

from autotagger.api.errors import database_unavailable_json, error_json
from autotagger.api.parsers import charset_accepted

logger = logging.getLogger(__name__)


def client_address(request: HttpRequest) -> str:
    """The client's IP address: the socket's peer, or with AUTOTAGGER_PROXY_COUNT proxies in front, the address
    that many entries from the end of X-Forwarded-For (what the nearest trusted proxy saw), as DRF's
    NUM_PROXIES does for the API's rates."""
    proxies = settings.AUTOTAGGER_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        addresses = [address.strip() for address in forwarded.split(",")]
        return addresses[-min(proxies, len(addresses))]
    return str(request.META.get("REMOTE_ADDR", ""))


def is_api_request(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def _refuse(request: HttpRequest, *, status: int, code: str, message: str) -> HttpResponse:
    if is_api_request(request):
        return error_json(code=code, message=message, status_code=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def _nul_in_request(request: HttpRequest) -> str | None:
    """Where the request holds a NUL character, or None."""
    if "\x00" in request.path_info:
        return "the path"
    for name, value in request.META.items():
        if name.startswith("HTTP_") and isinstance(value, str) and "\x00" in value:
            return f"the header {name.removeprefix('HTTP_').replace('_', '-').title()}"
    for key, values in request.GET.lists():
        if "\x00" in key or any("\x00" in value for value in values):
            return f"the query parameter {key.replace(chr(0), '?')!r}"
    return None


def _charset_refusal(charset: str) -> str:
    return f"The charset {charset[:40]!r} is not accepted; send UTF-8 (charset=utf-8 or no charset)."


def _refused_charset(content_type: str) -> str | None:
    _, params = parse_header_parameters(content_type)
    charset = params.get("charset")
    return charset if charset is not None and not charset_accepted(charset) else None


class CharsetGuard:
    """WSGI middleware (autotagger/wsgi.py): a 415 for a charset other than UTF-8 before Django builds the
    request. Django decodes the query string with the declared charset while building it, so a codec that
    is no text encoding (`charset=bz2_codec` with any query string) raised before any middleware ran."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        charset = _refused_charset(environ.get("CONTENT_TYPE", ""))
        if charset is None:
            return self.app(environ, start_response)
        message = _charset_refusal(charset)
        if str(environ.get("PATH_INFO", "")).startswith("/api/"):
            error = {"error": {"code": "unsupported_charset", "message": message, "details": {}}}
            body, content_type = json.dumps(error).encode(), "application/json"
        else:
            body, content_type = message.encode(), "text/plain; charset=utf-8"
        start_response(
            "415 Unsupported Media Type", [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        )
        return [body]


class RequestSanityMiddleware:
    """400 for a NUL character outside the body, 415 for a body in a charset other than UTF-8 (or ASCII)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        charset = _refused_charset(request.META.get("CONTENT_TYPE", ""))
        if charset is not None:
            # Before anything reads request.GET: Django decodes the query string with this charset too.
            return _refuse(request, status=415, code="unsupported_charset", message=_charset_refusal(charset))
        where = _nul_in_request(request)
        if where is not None:
            return _refuse(
                request,
                status=400,
                code="invalid",
                message=f"A NUL character (\\u0000) in {where}: it cannot be stored or searched for.",
            )
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """A view that failed because the database is down or unreachable answers 503: JSON for the API, a short
    page otherwise. (API views answer it themselves through the exception handler; this catches the rest.)"""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.error("Database unavailable during %s %s: %s", request.method, request.path, exception)
        return database_unavailable_response(request)


def database_unavailable_response(request: HttpRequest) -> HttpResponse:
    if is_api_request(request):
        return database_unavailable_json()
    response = HttpResponse(
        "<!doctype html><title>Service unavailable</title>"
        "<h1>Service unavailable</h1><p>The database cannot be reached. Try again in a moment.</p>",
        status=503,
        content_type="text/html; charset=utf-8",
    )
    response["Retry-After"] = "5"
    return response
