"""manage.py import_recipes PATH.jsonl [--labeled] [--create-taxonomy] [--map FILE.json] [--source NAME]."""

from __future__ import annotations

import json
from io import StringIO
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from conftest import SHARED_DATASETS
from feedback.models import GoldLabel
from feedback.selectors import gold_label_stats
from tagging.models import Recipe
from taxonomy.models import Category

pytestmark = pytest.mark.django_db


def _recipe(external_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": external_id,
        "title": f"Recipe {external_id}",
        "ingredients": ["1 onion"],
        "instructions": "Fry.",
        **fields,
    }


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _call(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_recipes", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_imports_the_file_and_prints_the_counts(tmp_path: Path, cuisine: Category) -> None:
    path = _write(
        tmp_path / "themealdb.jsonl",
        [
            json.dumps(_recipe("1", tags={"cuisine": ["Italian"]})),
            json.dumps(_recipe("2", tags={"cuisine": ["Mexican"]})),
        ],
    )

    out, _ = _call(str(path), "--labeled")

    assert out == "2 recipes created, 0 updated, 0 unchanged; 2 labels; 0 categories and 0 tags created.\n"
    # The source is the file's name without extension.
    assert sorted(Recipe.objects.values_list("source", "external_id")) == [("themealdb", "1"), ("themealdb", "2")]
    assert GoldLabel.objects.count() == 2


def test_the_source_option_names_the_source(tmp_path: Path, cuisine: Category) -> None:
    path = _write(tmp_path / "export.jsonl", [json.dumps(_recipe("1"))])

    _call(str(path), "--source", "catalogue")

    assert list(Recipe.objects.values_list("source", flat=True)) == ["catalogue"]


def test_running_it_again_updates_instead_of_duplicating(tmp_path: Path, cuisine: Category) -> None:
    path = _write(tmp_path / "set.jsonl", [json.dumps(_recipe("1")), json.dumps(_recipe("2"))])
    _call(str(path), "--labeled")
    _write(path, [json.dumps(_recipe("1")), json.dumps(_recipe("2", title="Renamed"))])

    out, _ = _call(str(path), "--labeled")

    assert out.startswith("0 recipes created, 1 updated, 1 unchanged;")
    assert Recipe.objects.count() == 2


def test_bad_lines_are_printed_with_their_numbers_and_the_command_still_succeeds(
    tmp_path: Path, cuisine: Category
) -> None:
    path = _write(tmp_path / "set.jsonl", [json.dumps(_recipe("1")), "{oops", json.dumps({"id": "3"})])

    out, _ = _call(str(path))

    assert out.splitlines() == [
        "1 recipes created, 0 updated, 0 unchanged; 0 labels; 0 categories and 0 tags created.",
        "2 bad lines were skipped:",
        "line 2: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        "line 3: 'title' is missing",
    ]


def test_it_prints_only_the_first_50_bad_lines(tmp_path: Path, cuisine: Category) -> None:
    path = _write(tmp_path / "set.jsonl", ["[]"] * 53)

    out, _ = _call(str(path))

    lines = out.splitlines()
    assert lines[1] == "53 bad lines were skipped:"
    assert lines[2:52] == [f"line {n}: expected a JSON object, got an array" for n in range(1, 51)]
    assert lines[52:] == ["... and 3 more"]


def test_unmapped_tags_are_listed_per_category_with_their_counts(tmp_path: Path, cuisine: Category) -> None:
    path = _write(
        tmp_path / "set.jsonl",
        [
            json.dumps(_recipe("1", tags={"cuisine": ["Klingon"], "main_ingredient": ["Beef"]})),
            json.dumps(_recipe("2", tags={"cuisine": ["Vulcan", "Klingon"], "main_ingredient": ["Beef"]})),
        ],
    )

    out, _ = _call(str(path), "--labeled")

    assert out.splitlines()[1:] == [
        "Tags not in the taxonomy were not stored (add them, or use --map or --create-taxonomy):",
        "cuisine: Klingon (2), Vulcan (1)",
        "main_ingredient: Beef (2)",
    ]


def test_create_taxonomy_creates_what_is_missing_keeping_the_category_name_as_its_slug(
    tmp_path: Path, cuisine: Category
) -> None:
    path = _write(tmp_path / "set.jsonl", [json.dumps(_recipe("1", tags={"main_ingredient": ["Beef", "Pork"]}))])

    out, _ = _call(str(path), "--labeled", "--create-taxonomy")

    assert out == "1 recipes created, 0 updated, 0 unchanged; 2 labels; 1 categories and 2 tags created.\n"
    category = Category.objects.get(slug="main_ingredient")
    assert category.name == "Main Ingredient"
    assert sorted(category.tags.values_list("slug", flat=True)) == ["beef", "pork"]


def test_the_map_file_sends_tags_where_it_says(tmp_path: Path, cuisine: Category) -> None:
    path = _write(tmp_path / "set.jsonl", [json.dumps(_recipe("1", tags={"area": ["Tex-Mex"]}))])
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"area": {"Tex-Mex": "cuisine/mexican"}}))

    out, _ = _call(str(path), "--labeled", "--map", str(mapping))

    assert "1 labels" in out
    assert list(GoldLabel.objects.values_list("tag__slug", flat=True)) == ["mexican"]


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="does not exist"):
        _call(str(tmp_path / "nowhere.jsonl"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "The --map file .*map.json does not exist."),
        ("{not json", r"is not valid JSON \(line 1, column 2"),
        ('["a list"]', "The mapping must be an object"),
        ('{"area": {"Tex-Mex": "cuisine/texmex"}}', "'cuisine/texmex' is no existing tag"),
    ],
)
def test_a_bad_map_file_is_an_error_and_nothing_is_imported(
    tmp_path: Path, cuisine: Category, content: str | None, message: str
) -> None:
    path = _write(tmp_path / "set.jsonl", [json.dumps(_recipe("1"))])
    mapping = tmp_path / "map.json"
    if content is not None:
        mapping.write_text(content)

    with pytest.raises(CommandError, match=message):
        _call(str(path), "--map", str(mapping))

    assert Recipe.objects.count() == 0


def test_the_first_200_recipes_of_themealdb_import_with_their_taxonomy_and_labels(tmp_path: Path) -> None:
    dataset = SHARED_DATASETS / "themealdb.jsonl"
    if not dataset.is_file():
        pytest.skip(f"../shared/datasets is not here: {dataset} is missing")
    with dataset.open(encoding="utf-8") as file:
        path = _write(tmp_path / "themealdb.jsonl", [line.rstrip("\n") for line in islice(file, 200)])

    out, _ = _call(str(path), "--labeled", "--create-taxonomy")
    again, _ = _call(str(path), "--labeled", "--create-taxonomy")

    # 6 categories with 13 + 35 + 6 + 4 + 2 + 53 distinct tags; 752 (recipe, tag) pairs in these lines.
    assert out == "200 recipes created, 0 updated, 0 unchanged; 752 labels; 6 categories and 113 tags created.\n"
    assert again == "0 recipes created, 0 updated, 200 unchanged; 752 labels; 0 categories and 0 tags created.\n"
    assert sorted(Category.objects.values_list("slug", flat=True)) == [
        "category",
        "course",
        "cuisine",
        "diet",
        "keywords",
        "main_ingredient",
    ]
    stats = gold_label_stats()
    assert (stats["labels"], stats["labelled_recipes"]) == (752, 200)
    assert stats["categories"] == {
        "category": 200,
        "course": 72,
        "cuisine": 200,
        "diet": 23,
        "keywords": 156,
        "main_ingredient": 101,
    }
