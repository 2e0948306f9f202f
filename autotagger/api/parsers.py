"""JSON in: UTF-8 only, at most MAX_JSON_DEPTH levels deep, and no text the database cannot store.

PostgreSQL refuses NUL characters in text and jsonb, and a lone surrogate ("\\ud800") cannot be encoded
to UTF-8 at all: both would otherwise fail deep inside a write as a 500. Python's JSON decoder recurses
once per level, so thousands of nested `[` raise RecursionError rather than a parse error.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import JSONParser
from rest_framework.utils import json

# Deeper than any request of this API (an import's "map" is 3 levels), far below the recursion limit.
MAX_JSON_DEPTH = 32

# Codec names (as codecs.lookup spells them) a JSON body may declare; JSON is UTF-8 (RFC 8259).
ACCEPTED_CHARSETS = frozenset({"utf-8", "ascii"})


class UnsupportedCharset(UnsupportedMediaType):
    default_code = "unsupported_charset"

    def __init__(self, charset: str) -> None:
        super().__init__(
            media_type=charset,
            detail=f"The charset {charset!r} is not accepted; send UTF-8 (charset=utf-8 or no charset).",
        )


def charset_accepted(charset: str) -> bool:
    try:
        return codecs.lookup(charset).name in ACCEPTED_CHARSETS
    except LookupError:
        return False


def _path(parts: tuple[str | int, ...]) -> str:
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "a NUL character (\\u0000), which cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (such as \\ud800), which is not Unicode text"
    return None


def json_value_check(data: Any, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise ParseError naming where `data` nests deeper than `max_depth` or holds text that cannot be stored.

    Iterative, so the check itself never recurses.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, parts = stack.pop()
        if len(parts) > max_depth:
            raise ParseError(f"JSON nested more than {max_depth} levels deep (at {_path(parts[:max_depth])}).")
        if isinstance(value, str):
            problem = _text_problem(value)
            if problem:
                raise ParseError(f"The JSON string at {_path(parts)} contains {problem}.")
        elif isinstance(value, dict):
            for key, item in value.items():
                problem = _text_problem(key)
                if problem:
                    raise ParseError(f"A JSON key at {_path(parts)} contains {problem}.")
                stack.append((item, (*parts, key)))
        elif isinstance(value, list):
            stack.extend((item, (*parts, index)) for index, item in enumerate(value))


def json_loads_checked(body: bytes, *, encoding: str | None = None) -> Any:
    """Decode a JSON body as UTF-8 (or a declared ASCII), refusing what json_value_check refuses."""
    if encoding and not charset_accepted(encoding):
        raise UnsupportedCharset(encoding)
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=json.strict_constant)
    except UnicodeDecodeError as exc:
        raise ParseError(f"The body is not UTF-8 text (byte {exc.start}).") from exc
    except RecursionError as exc:
        raise ParseError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep.") from exc
    except ValueError as exc:
        raise ParseError(f"JSON parse error - {exc}") from exc
    json_value_check(data)
    return data


class CheckedJSONParser(JSONParser):
    """The API's JSON parser: DRF's (it reads `request.body`, so DATA_UPLOAD_MAX_MEMORY_SIZE applies) with
    the checks of json_loads_checked."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        context = parser_context or {}
        body = stream.read() if stream is not None else b""
        return json_loads_checked(body, encoding=context.get("encoding", settings.DEFAULT_CHARSET))
