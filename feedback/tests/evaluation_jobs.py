"""A labelled dataset of many recipes and a scripted model for the chunked evaluation job tests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prompts.rendering import RECIPE_CLOSE, RECIPE_OPEN

# Written for these tests: (title, ingredients, the dataset's cuisine).
DISHES = [
    ("Spaghetti al Pomodoro", ["spaghetti", "tomatoes", "basil"], "Italian"),
    ("Chicken Tikka", ["chicken", "yoghurt", "garam masala"], "Indian"),
    ("Beef Tacos", ["tortillas", "beef", "salsa"], "Mexican"),
    ("Miso Soup", ["miso", "tofu", "wakame", "dashi"], "Japanese"),
]
TITLE = re.compile(r"Title: (.+)")
NUMBER = re.compile(r" no\. (\d+)$")


def dataset_bytes(count: int) -> bytes:
    """`count` recipes, each dish again under a numbered title, one blank line among them."""
    lines = []
    for i in range(count):
        title, ingredients, cuisine = DISHES[i % len(DISHES)]
        row = {
            "id": f"r{i}",
            "title": f"{title} no. {i}",
            "ingredients": ingredients,
            "instructions": "Cook it.",
            "tags": {"cuisine": [cuisine]},
        }
        lines.append(json.dumps(row))
        if i == 3:
            lines.append("")
    return ("\n".join(lines) + "\n").encode()


def _title(request: dict[str, Any]) -> str:
    user = next(m["content"] for m in request["messages"] if m["role"] == "user")
    found = TITLE.search(user[user.rindex(RECIPE_OPEN) : user.rindex(RECIPE_CLOSE)])
    assert found
    return found.group(1).strip()


def half_right(request: dict[str, Any]) -> dict[str, Any]:
    """A model that knows the cuisine of the even-numbered recipes and gives the first offered tag otherwise,
    with a confidence that says which."""
    title = _title(request)
    number = int(NUMBER.search(title).group(1))  # type: ignore[union-attr]
    cuisine = next(c for t, _, c in DISHES if title.startswith(t)).lower()
    schema = request["response_format"].get("json_schema", {}).get("schema") or request["response_format"]["schema"]
    offered = {slug: spec["items"]["properties"]["tag"]["enum"] for slug, spec in schema["properties"].items()}
    return {
        slug: [
            {"tag": cuisine, "reason": "known", "confidence": 0.9}
            if number % 2 == 0 and cuisine in allowed
            else {"tag": allowed[0], "reason": "guess", "confidence": 0.4}
        ]
        for slug, allowed in offered.items()
    }


def comparable(metrics: dict[str, Any]) -> dict[str, Any]:
    """An evaluation's metrics without what depends on when and how the answers came (latency, cache hits)."""
    kept = {key: value for key, value in metrics.items() if key != "latency_ms"}
    kept["llm"] = {key: value for key, value in metrics["llm"].items() if key not in ("latency_ms", "cache_hits")}
    return kept


def write(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "many.jsonl"
    path.write_bytes(dataset_bytes(count))
    return path
