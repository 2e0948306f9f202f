from __future__ import annotations

import threading
from typing import Any

from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable: invalid, unknown_category, not_authenticated, ...")
    message = serializers.CharField(help_text="What went wrong, in a sentence.")
    details = serializers.JSONField(help_text="Field errors or the offending values.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


ERROR_REF = {"$ref": "#/components/schemas/Error"}

# Answers any operation can give, besides those its view declares (with their own descriptions and examples).
COMMON_ERRORS = {
    "400": "Invalid input: a parameter or the body, or a NUL character anywhere in the request",
    "403": "Not allowed: missing permission, or a signed-in browser request without its CSRF token",
    "406": "The Accept header names no type this API answers (application/json)",
    "415": "A body of another type than the operation accepts, or a charset other than UTF-8",
    "429": "Too many requests from this client (see `details.scope` and the Retry-After header)",
    "503": "A service the request needs is unavailable (the database, the task queue, the embedding model, "
    "the LLM); try again later",
}
AUTHENTICATION_ERROR = ("401", "No or invalid credentials")
NOT_FOUND_ERROR = ("404", "No such object, or a page past the last one")
BODY_TOO_LARGE_ERROR = ("413", "Body over the size limit")
# Raised by services rather than views: duplicate (source, external id) on create and update.
CONFLICT_OPERATIONS = frozenset({"recipes_create", "recipes_update", "recipes_partial_update"})
CONFLICT_ERROR = ("409", "Another recipe of the same source has this external id")

HTTP_METHODS = frozenset({"get", "put", "post", "patch", "delete"})


def _error_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"content": {"application/json": {"schema": ERROR_REF}}, "description": description}
    if headers:
        response["headers"] = headers
    return response


def _expected_errors(path: str, operation: dict[str, Any]) -> dict[str, str]:
    errors = dict(COMMON_ERRORS)
    security = operation.get("security") or []
    if security and {} not in security:
        errors.update([AUTHENTICATION_ERROR])
    parameters = operation.get("parameters") or []
    if "{" in path or any(p.get("in") == "query" and p.get("name") == "page" for p in parameters):
        errors.update([NOT_FOUND_ERROR])
    if "requestBody" in operation:
        errors.update([BODY_TOO_LARGE_ERROR])
    if operation.get("operationId") in CONFLICT_OPERATIONS:
        errors.update([CONFLICT_ERROR])
    return errors


def declare_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every error status an operation can answer is in the document,
    with the error object as its body (answered by the exception handler, middleware or throttles rather
    than by the view, so no view's decorator can list them all)."""
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status_code, description in _expected_errors(path, operation).items():
                if status_code in responses:
                    continue
                headers = None
                if status_code == "429":
                    headers = {
                        "Retry-After": {
                            "schema": {"type": "integer"},
                            "description": "Seconds until the client may send this request again",
                            "required": True,
                        }
                    }
                responses[status_code] = _error_response(description, headers)
            operation["responses"] = dict(sorted(responses.items()))
    return result


_SCHEMA_BUILD = threading.Lock()


class SchemaView(SpectacularAPIView):
    """The OpenAPI document, built one request at a time per process: drf-spectacular loads its extension
    classes on the first build, and two threads doing that at once fail with a 500 (a class it could not import
    is set to None under the other thread's feet)."""

    def _get_schema_response(self, request: Request) -> Response:
        with _SCHEMA_BUILD:
            return super()._get_schema_response(request)  # type: ignore[no-any-return]
