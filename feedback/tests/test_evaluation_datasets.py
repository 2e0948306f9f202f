"""Reading a chunk of a labelled dataset: the recipes at some positions, without parsing the rest."""

from __future__ import annotations

import json

from feedback.evaluation.datasets import dataset_parse, dataset_recipes_at


def _line(number: int) -> bytes:
    recipe = {
        "id": f"r-{number}",
        "title": f"Dish {number}",
        "ingredients": ["rice", f"spice {number}"],
        "instructions": "Cook.",
        "tags": {"cuisine": ["Indian" if number % 2 else "Thai"]},
    }
    return (json.dumps(recipe) + "\n").encode()


def test_it_returns_the_same_recipes_as_the_whole_dataset_at_those_positions() -> None:
    lines = [_line(0), b"\n", _line(1), _line(2), b"   \n", _line(3), _line(4)]
    dataset = dataset_parse(name="chunked", lines=lines)

    chunk = dataset_recipes_at(lines=lines, positions=[1, 3, 4])

    assert sorted(chunk) == [1, 3, 4]
    for position, recipe in chunk.items():
        assert recipe == dataset.recipes[position]


def test_it_leaves_the_lines_outside_the_chunk_unparsed() -> None:
    lines = [_line(0), _line(1), b"this line is never read as JSON\n", _line(3)]

    chunk = dataset_recipes_at(lines=lines, positions=[0, 1])

    assert [recipe.id for recipe in chunk.values()] == ["r-0", "r-1"]
    assert chunk[1].labels == {"cuisine": {"indian"}}
