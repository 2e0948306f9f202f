"""Django's error views (handler404, handler500): the API's JSON error shape under /api/, pages elsewhere."""

from __future__ import annotations

import sys

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.urls import Resolver404, resolve
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from autotagger.api.errors import error_json
from autotagger.middleware import database_unavailable_response, is_api_request


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api_request(request):
        return error_json(code="not_found", message=f"No API endpoint at {request.path[:200]}.", status_code=404)
    return defaults.page_not_found(request, exception)  # type: ignore[arg-type]


@csrf_exempt  # a 404 changes nothing; a CSRF refusal here would be an HTML 403 where the API answers JSON
def api_not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """The last route under /api/: the JSON 404 even with DEBUG on, where Django would show its technical 404
    page instead of handler404. A path that only lacks its final slash is redirected, as APPEND_SLASH would
    (this route matching everything would otherwise stop it)."""
    if settings.APPEND_SLASH and not request.path_info.endswith("/"):
        try:
            match = resolve(request.path_info + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not api_not_found:
            return HttpResponsePermanentRedirect(request.get_full_path(force_append_slash=True))
    return not_found(request)


def server_error(request: HttpRequest) -> HttpResponse:
    # Django calls this while handling the exception, so it is still the current one.
    exception = sys.exc_info()[1]
    if isinstance(exception, OperationalError | InterfaceError):
        return database_unavailable_response(request)
    if is_api_request(request):
        return error_json(code="server_error", message="Internal server error.", status_code=500)
    return defaults.server_error(request)
