"""The word index of tag names and synonyms (tagging.features.LexicalIndex) finds exactly the lexical evidence
that matching every tag's pattern against the recipe finds, while examining only the tags whose words occur."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from autotagger.recipe_text import RecipeText
from conftest import DEFAULT_TAXONOMY, DEMO_RECIPES
from tagging.features import LexicalIndex, lexical_evidence, lexical_matches, lexical_words

EVERYDAY = Path(__file__).parent / "data" / "everyday_recipes.json"

# Phrases whose words are bounded in every way phrase_pattern allows: plurals, hyphens, several words,
# punctuation inside and at the start, too short to count.
TRICKY_TAGS: list[tuple[str, tuple[str, ...]]] = [
    ("Tomato", ("tomatoes",)),
    ("Red lentil", ("masoor dal",)),
    ("Gluten-free", ("no-gluten",)),
    ("Mac & cheese", ()),
    ("(Spicy)", ("-hot",)),
    ("Pie", ("ok",)),
    ("Egg", ()),
    ("Dish", ()),
    ("Coq au vin", ("bœuf",)),
    ("Olive", ("olive oil", "olives")),  # a one-word phrase that starts a longer one
]


def _recipes() -> list[RecipeText]:
    rows = json.loads(DEMO_RECIPES.read_text())
    rows += json.loads(EVERYDAY.read_text())
    texts = [RecipeText(r["title"], list(r["ingredients"]), str(r["instructions"])) for r in rows]
    texts += [
        RecipeText("Gluten-free mac & cheese", ["2 eggs", "200 g tomatoes"], "Bake the pies. Serve (spicy) and -hot."),
        RecipeText("Red lentils with masoor dal", ["1 dish of bœuf"], "A dishes' worth; coq au vin aside."),
        RecipeText("Olive oil cake", ["olives", "2 tbsp olive-oil", "olive oil"], "Oil the tin with olive oil."),
    ]
    return texts


def _taxonomy_tags() -> list[tuple[str, tuple[str, ...]]]:
    document = json.loads(DEFAULT_TAXONOMY.read_text())
    return [(t["name"], tuple(t.get("synonyms", []))) for c in document["categories"] for t in c["tags"]]


def test_it_gives_every_tag_of_the_default_taxonomy_the_evidence_its_pattern_gives() -> None:
    tags = _taxonomy_tags() + TRICKY_TAGS
    index = LexicalIndex(tags)
    recipes = _recipes()

    matrix = index.evidence_matrix(recipes)

    expected = np.array(
        [[lexical_evidence(name, synonyms, r.lexical_fields()) for name, synonyms in tags] for r in recipes],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(matrix, expected)
    assert (expected > 0).sum() > len(recipes), "too few matches for the comparison to mean anything"


def test_it_gives_every_tag_the_words_its_pattern_matches_in_each_field() -> None:
    tags = _taxonomy_tags() + TRICKY_TAGS
    index = LexicalIndex(tags)
    recipes = _recipes()

    fields = [r.lexical_fields() for r in recipes]
    words = [lexical_words(f) for f in fields]

    matched = [[index.matches(j, f, w) for j in range(len(tags))] for f, w in zip(fields, words, strict=True)]

    expected = [[lexical_matches(name, synonyms, f) for name, synonyms in tags] for f in fields]
    assert matched == expected
    assert sum(1 for row in expected for found in row if found) > len(recipes)
    olive = len(tags) - 1
    assert expected[-1][olive] == {"title": ["olive"], "ingredients": ["olive", "olives"], "instructions": ["olive"]}


def test_it_examines_only_tags_whose_words_the_recipe_contains() -> None:
    tags = _taxonomy_tags()
    index = LexicalIndex(tags)
    carbonara = RecipeText("Spaghetti carbonara", ["spaghetti", "eggs", "pancetta"], "Boil. Mix.")

    candidates = index.candidates(lexical_words(carbonara.lexical_fields()))

    assert 0 < len(candidates) < len(tags) / 10
    names = {tags[j][0] for j in candidates}
    assert "Italian" in names  # pancetta is one of its synonyms
    assert "Japanese" not in names


def test_it_reads_the_plural_of_a_one_word_name_but_not_a_longer_word() -> None:
    index = LexicalIndex([("Lentil", ()), ("Mince", ())])

    evidence = index.evidence({"title": "lentils and minced pork", "ingredients": "", "instructions": ""})

    assert evidence == {0: 1.0}
