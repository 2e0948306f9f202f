"""The one reader of recipe JSON lines (the format of ../shared/datasets/README.md), for the import and the
evaluation alike: a line becomes a RecipeLine or a BadLine naming what is wrong; slugs of the category and
tag names a dataset uses."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from django.utils.text import slugify

MAX_TITLE_LENGTH = 500
MAX_EXTERNAL_ID_LENGTH = 200
MAX_NAME_LENGTH = 100

_SLUG = re.compile(r"^[a-z0-9_-]+$")


class BadLine(Exception):
    """A line that is no recipe; the message says why (without the line number)."""


@dataclass(frozen=True)
class RecipeLine:
    line: int
    external_id: str
    title: str
    ingredients: list[str]
    instructions: str
    tags: dict[str, list[str]]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _text(data: dict[str, Any], name: str, *, max_length: int | None = None) -> str:
    value = data.get(name)
    if value is None:
        raise BadLine(f"'{name}' is missing")
    if not isinstance(value, str):
        raise BadLine(f"'{name}' must be a string, not {_kind(value)}")
    value = value.strip()
    if not value:
        raise BadLine(f"'{name}' is empty")
    if max_length is not None and len(value) > max_length:
        raise BadLine(f"'{name}' is longer than {max_length} characters ({len(value)})")
    return value


def _no_nul(*texts: str) -> None:
    if any("\x00" in text for text in texts):
        raise BadLine("a text contains a NUL character (\\u0000), which the database cannot store")
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise BadLine("a text contains a lone surrogate (such as \\ud800), which is not Unicode text") from None


def _tags(value: Any) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadLine(f"'tags' must be an object of category → list of tag names, not {_kind(value)}")
    tags: dict[str, list[str]] = {}
    for raw_category, names in value.items():
        category = raw_category.strip()
        if not category or len(category) > MAX_NAME_LENGTH:
            raise BadLine(f"tag category {raw_category!r} must have 1 to {MAX_NAME_LENGTH} characters")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise BadLine(f"'tags.{category}' must be a list of strings")
        cleaned = list(dict.fromkeys(name.strip() for name in names if name.strip()))
        too_long = [name for name in cleaned if len(name) > MAX_NAME_LENGTH]
        if too_long:
            name = too_long[0][:40]
            raise BadLine(f"tag name {name!r}… in '{category}' is longer than {MAX_NAME_LENGTH} characters")
        _no_nul(category, *cleaned)
        if cleaned:
            # Two keys can become one once stripped ("cuisine " and "cuisine").
            tags[category] = list(dict.fromkeys([*tags.get(category, []), *cleaned]))
    return tags


def recipe_line_parse(raw: str | bytes, *, line: int, labeled: bool) -> RecipeLine:
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise BadLine("not UTF-8 text") from exc
    except RecursionError as exc:
        raise BadLine("JSON nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise BadLine(f"invalid JSON: {exc.msg} (column {exc.colno})") from exc
    if not isinstance(data, dict):
        raise BadLine(f"expected a JSON object, got {_kind(data)}")
    if isinstance(data.get("id"), int) and not isinstance(data["id"], bool):
        data["id"] = str(data["id"])
    external_id = _text(data, "id", max_length=MAX_EXTERNAL_ID_LENGTH)
    title = _text(data, "title", max_length=MAX_TITLE_LENGTH)
    ingredients = data.get("ingredients")
    if ingredients is None:
        ingredients = []
    if not isinstance(ingredients, list) or not all(isinstance(item, str) for item in ingredients):
        raise BadLine("'ingredients' must be a list of strings")
    instructions = data.get("instructions")
    if instructions is None:
        instructions = ""
    if not isinstance(instructions, str):
        raise BadLine(f"'instructions' must be a string, not {_kind(instructions)}")
    if not any(item.strip() for item in ingredients) and not instructions.strip():
        raise BadLine("the recipe has no ingredients and no instructions")
    _no_nul(external_id, title, instructions, *ingredients)
    return RecipeLine(
        line=line,
        external_id=external_id,
        title=title,
        ingredients=ingredients,
        instructions=instructions,
        tags=_tags(data.get("tags")) if labeled else {},
    )


def category_slug(name: str) -> str:
    """The dataset's category name itself when it is a slug (`main_ingredient` stays `main_ingredient`)."""
    name = name.strip()
    if _SLUG.match(name):
        return name[:100]
    return slugify(name).replace("-", "_")[:100]


def tag_slug(name: str) -> str:
    """A tag's slug from its name; names of no Latin letter keep their own script ("ご飯" stays itself)."""
    return (slugify(name) or slugify(name, allow_unicode=True) or hashlib.sha1(name.encode()).hexdigest()[:10])[:100]
