from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.parsers import JSONParser

from autotagger.api.errors import PayloadTooLarge


class LimitedJSONParser(JSONParser):
    """JSON with a size limit: DRF reads the raw stream, which skips Django's DATA_UPLOAD_MAX_MEMORY_SIZE."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"The request body is {int(declared)} bytes; the limit is {limit} bytes.")
        if stream is None:
            return super().parse(stream, media_type, parser_context)
        body = stream.read(limit + 1)
        if len(body) > limit:
            raise PayloadTooLarge(f"The request body is over the limit of {limit} bytes.")
        import io

        return super().parse(io.BytesIO(body), media_type, parser_context)
