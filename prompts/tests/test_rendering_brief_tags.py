"""A shortlist in brief (prompts.rendering.prompt_messages with brief_tags): slugs, names only where the slug
does not spell them, no descriptions; the rest of the prompt as usual."""

from __future__ import annotations

from autotagger.recipe_text import RecipeText
from prompts.rendering import CategoryChoice, TagChoice, prompt_messages

MAIN = CategoryChoice(
    slug="course",
    name="Course",
    description="Where the dish sits in a meal.",
    k=1,
    tags=(
        TagChoice(slug="main-course", name="Main course", description="The centre of the meal."),
        TagChoice(slug="side", name="Side dish", description="Served beside a main course."),
    ),
)
STEW = RecipeText(title="Beef stew", ingredients=["beef", "carrots"], instructions="Simmer for two hours.")


def test_a_brief_listing_leaves_out_descriptions_and_names_the_slug_spells() -> None:
    _, user = prompt_messages(recipe=STEW, categories=[MAIN], brief_tags=True)

    assert "\n- main-course\n" in user
    assert "\n- side — Side dish\n" in user
    assert "The centre of the meal." not in user
    assert "Served beside a main course." not in user


def test_a_brief_listing_keeps_the_category_its_k_and_the_fenced_recipe() -> None:
    _, user = prompt_messages(recipe=STEW, categories=[MAIN], brief_tags=True)

    assert 'Category "course" (Course; at most 1): Where the dish sits in a meal.' in user
    assert "<recipe>\nTitle: Beef stew\n" in user


def test_a_brief_listing_is_shorter_than_the_full_one() -> None:
    _, brief = prompt_messages(recipe=STEW, categories=[MAIN], brief_tags=True)
    _, full = prompt_messages(recipe=STEW, categories=[MAIN])

    assert len(brief) < len(full)
    assert "- main-course — Main course: The centre of the meal." in full
