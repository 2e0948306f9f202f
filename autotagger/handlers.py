"""Django's error views (handler404, handler500): the API's JSON error shape under /api/, pages elsewhere."""

from __future__ import annotations

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.views import defaults

from autotagger.api.errors import error_json
from autotagger.middleware import database_unavailable_response, is_api_request


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api_request(request):
        return error_json(code="not_found", message=f"No API endpoint at {request.path[:200]}.", status_code=404)
    return defaults.page_not_found(request, exception)  # type: ignore[arg-type]


def server_error(request: HttpRequest) -> HttpResponse:
    # Django calls this while handling the exception, so it is still the current one.
    exception = sys.exc_info()[1]
    if isinstance(exception, OperationalError | InterfaceError):
        return database_unavailable_response(request)
    if is_api_request(request):
        return error_json(code="server_error", message="Internal server error.", status_code=500)
    return defaults.server_error(request)
