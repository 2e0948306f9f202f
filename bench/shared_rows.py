"""The recipes the benchmarks recombine: the rows of the shared datasets (../shared/datasets, beside the project),
or the project's own demo recipes on a machine without them. Plain dicts as the files hold them (title,
ingredients, instructions, tags), no Django needed."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
# Where a named dataset is looked for: beside the project, then this workplace's own copy.
SHARED_CANDIDATES = (DATASETS, Path("/work/shared/datasets"))
DEMO_RECIPES = ROOT / "tagging" / "data" / "demo_recipes.json"

Row = dict[str, Any]


def with_title_and_ingredients(row: Row) -> bool:
    return bool(row.get("title") and row.get("ingredients"))


def shared_rows(
    *, names: Sequence[str] | None = None, keep: Callable[[Row], bool] = with_title_and_ingredients
) -> list[Row]:
    """The rows of the shared datasets `names` (every one, in name order, by default) that `keep` accepts."""
    paths = [DATASETS / f"{name}.jsonl" for name in names] if names is not None else sorted(DATASETS.glob("*.jsonl"))
    rows: list[Row] = []
    for path in paths:
        if not path.is_file():
            continue
        # Lines end at "\n" only: some instructions hold other line separators (U+2028) inside their strings.
        for line in path.read_text().split("\n"):
            if line.strip():
                row = json.loads(line)
                if keep(row):
                    rows.append(row)
    return rows


def demo_rows() -> list[Row]:
    """The project's demo recipes (always there)."""
    rows: list[Row] = json.loads(DEMO_RECIPES.read_text())
    return rows
