"""One shape for every API error: {"error": {"code", "message", "details"}} with the right status."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from autotagger.errors import DomainError

logger = logging.getLogger(__name__)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for name, value in detail.items():
            inner = _first_message(value)
            return inner if name == "non_field_errors" else f"{name}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def error_response(*, code: str, message: str, details: Any, status_code: int, headers: Any = None) -> Response:
    return Response(
        {"error": {"code": code, "message": message, "details": details}}, status=status_code, headers=headers
    )


DATABASE_UNAVAILABLE = "The database is unavailable; try again in a moment."
# Seconds a client is told to wait after a 503 before trying again.
RETRY_AFTER_SECONDS = 5


def error_json(*, code: str, message: str, details: Any = None, status_code: int) -> JsonResponse:
    """The API's error shape outside DRF's views (unknown URLs, failures before or after a view)."""
    return JsonResponse(
        {"error": {"code": code, "message": message, "details": {} if details is None else details}},
        status=status_code,
    )


def database_unavailable_json() -> JsonResponse:
    response = error_json(code="database_unavailable", message=DATABASE_UNAVAILABLE, status_code=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return error_response(code=exc.code, message=exc.message, details=exc.details, status_code=exc.status)
    if isinstance(exc, OperationalError | InterfaceError):
        # The connection failed (server down, restarting, unreachable): not the request's fault.
        logger.error("Database unavailable: %s", exc)
        return error_response(
            code="database_unavailable",
            message=DATABASE_UNAVAILABLE,
            details={},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(f"The request body is over the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    assert isinstance(exc, exceptions.APIException)
    detail = exc.detail
    if isinstance(exc, exceptions.ValidationError):
        code, message, details = "invalid", _first_message(detail), detail
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        message, details = str(detail), getattr(exc, "error_details", {})
    response.data = {"error": {"code": code, "message": message, "details": details}}
    return response
