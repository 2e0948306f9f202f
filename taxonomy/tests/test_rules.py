"""Ingredient rules: which words of a recipe the shipped ingredient groups and tag rules find (no database)."""

from __future__ import annotations

import json

import pytest

from autotagger.recipe_text import RecipeText
from conftest import DEFAULT_TAXONOMY
from taxonomy.rules import IngredientMatcher, TagRule, rule_broken, rule_text

DOCUMENT = json.loads(DEFAULT_TAXONOMY.read_text())
GROUPS = {
    g["slug"]: IngredientMatcher(
        slug=g["slug"], name=g["name"], terms=tuple(g["terms"]), exceptions=tuple(g["exceptions"])
    )
    for g in DOCUMENT["ingredient_groups"]
}


def _rule(category: str, tag: str) -> TagRule:
    data = next(t for c in DOCUMENT["categories"] if c["slug"] == category for t in c["tags"] if t["slug"] == tag)
    return TagRule(
        excluded_by=tuple(GROUPS[slug] for slug in data.get("excluded_by", [])),
        required_terms=tuple(data.get("required_terms", [])),
    )


def _text(title: str, *ingredients: str) -> list[str]:
    return rule_text(RecipeText(title=title, ingredients=list(ingredients), instructions=""))


def _found(group: str, *ingredients: str) -> str | None:
    return GROUPS[group].first_match(_text("A recipe", *ingredients))


@pytest.mark.parametrize(
    ("group", "ingredient", "term"),
    [
        pytest.param("meat", "500 g boneless chicken thighs", "chicken", id="quantity-and-plural"),
        pytest.param("meat", "4 rashers of Bacon", "bacon", id="case"),
        pytest.param("dairy", "2 tbsp crème fraîche", "creme fraiche", id="accents"),
        pytest.param("dairy", "200g butter, softened", "butter", id="unit-stuck-to-the-number"),
        pytest.param("egg", "3 large eggs", "egg", id="eggs"),
        pytest.param("gluten", "200 g plain flour", "flour", id="flour"),
        pytest.param("gluten", "2 warm pitas", "pita", id="pita"),
        pytest.param("shellfish", "12 king prawns", "prawn", id="prawns"),
        pytest.param("nuts", "a handful of toasted walnuts", "walnut", id="walnuts"),
        pytest.param("alcohol", "150 ml dry white wine", "wine", id="wine"),
        pytest.param("pork", "goat's cheese and Serrano ham", "ham", id="ham-next-to-an-exception"),
    ],
)
def test_it_finds_a_group_term_in_any_case_form_and_quantity(group: str, ingredient: str, term: str) -> None:
    assert _found(group, ingredient) == term


@pytest.mark.parametrize(
    ("group", "ingredient"),
    [
        pytest.param("meat", "4 slices vegan bacon", id="vegan-bacon"),
        pytest.param("meat", "200 g plant-based sausages", id="plant-based-sausages"),
        pytest.param("dairy", "400 ml coconut milk", id="coconut-milk"),
        pytest.param("dairy", "2 tbsp smooth peanut butter", id="peanut-butter"),
        pytest.param("dairy", "250 ml unsweetened oat milk", id="oat-milk"),
        pytest.param("egg", "2 eggplants, diced", id="eggplant"),
        pytest.param("gluten", "200 g gluten-free flour", id="gluten-free-flour"),
        pytest.param("gluten", "200 g rice noodles", id="rice-noodles"),
        pytest.param("gluten", "8 corn tortillas", id="corn-tortillas"),
        pytest.param("nuts", "a pinch of nutmeg", id="nutmeg"),
        pytest.param("nuts", "1 butternut squash", id="butternut"),
        pytest.param("nuts", "1 can water chestnuts", id="water-chestnuts"),
        pytest.param("alcohol", "2 tbsp red wine vinegar", id="wine-vinegar"),
        pytest.param("shellfish", "200 g oyster mushrooms", id="oyster-mushrooms"),
        pytest.param("meat", "2 beef tomatoes", id="beef-tomatoes"),
    ],
)
def test_it_finds_nothing_in_an_exception_or_another_word(group: str, ingredient: str) -> None:
    assert _found(group, ingredient) is None


def test_it_matches_the_plural_and_common_forms_of_a_term() -> None:
    chillies = IngredientMatcher(slug="hot", name="Hot", terms=("chilli", "tomato"))

    assert chillies.first_match(_text("Salsa", "3 red chillies")) == "chilli"
    assert chillies.first_match(_text("Salsa", "4 Tomatoes")) == "tomato"


def test_a_wildcard_exception_covers_any_one_word_and_no_more() -> None:
    dairy = IngredientMatcher(slug="dairy", name="Dairy", terms=("cheese",), exceptions=("vegan *",))

    assert dairy.first_match(_text("Pizza", "vegan cheese")) is None
    assert dairy.first_match(_text("Pizza", "vegan pesto", "cheese")) == "cheese"


def test_an_exception_of_one_ingredient_line_never_hides_a_term_of_the_next() -> None:
    dairy = IngredientMatcher(slug="dairy", name="Dairy", terms=("milk",), exceptions=("coconut milk",))

    assert dairy.first_match(_text("Curry", "1 coconut", "milk")) == "milk"


def test_it_never_reads_the_instructions() -> None:
    recipe = RecipeText(title="Hummus", ingredients=["chickpeas", "tahini"], instructions="Serve with warm pita.")

    assert rule_broken(text=rule_text(recipe), rule=_rule("diet", "gluten-free")) is None


@pytest.mark.parametrize(
    ("title", "ingredients", "category", "tag", "reason"),
    [
        ("Chicken tikka masala", ["chicken thighs", "yogurt"], "diet", "eggetarian", "excluded by Meat ('chicken')"),
        ("Chicken tikka masala", ["chicken thighs", "yogurt"], "main_ingredient", "paneer", "requires one of: paneer"),
        ("Pork carnitas", ["pork shoulder", "orange"], "occasion", "passover", "excluded by Pork ('pork')"),
        ("Beef tacos", ["ground beef", "corn tortillas"], "diet", "vegetarian", "excluded by Meat ('beef')"),
        ("Beef pho", ["beef brisket", "rice noodles"], "diet", "pescatarian", "excluded by Meat ('beef')"),
        ("Falafel in pita", ["chickpeas", "pita bread"], "diet", "gluten-free", "excluded by Gluten ('bread')"),
        ("Paella", ["chorizo", "prawns", "rice"], "diet", "pescatarian", "excluded by Meat ('chorizo')"),
    ],
)
def test_the_default_rules_catch_the_contradictions_of_the_issue(
    title: str, ingredients: list[str], category: str, tag: str, reason: str
) -> None:
    text = _text(title, *ingredients)

    assert rule_broken(text=text, rule=_rule(category, tag)) == reason


def test_a_main_ingredient_is_allowed_when_the_title_or_an_ingredient_names_it() -> None:
    pad_thai = _text("Pad thai with shrimp", "rice noodles", "eggs", "peanuts")

    assert rule_broken(text=pad_thai, rule=_rule("main_ingredient", "shrimp")) is None
    assert rule_broken(text=pad_thai, rule=_rule("main_ingredient", "seafood")) is None
    assert rule_broken(text=pad_thai, rule=_rule("main_ingredient", "paneer")) == "requires one of: paneer"


def test_a_vegan_recipe_with_coconut_milk_and_eggplant_keeps_its_vegan_tag() -> None:
    curry = _text("Eggplant curry", "2 eggplants", "400 ml coconut milk", "rice")

    assert rule_broken(text=curry, rule=_rule("diet", "vegan")) is None
