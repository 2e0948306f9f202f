"""A shortlist in brief (prompts.rendering.prompt_messages with brief_tags): one line per category, each tag by
its slug and its name only where the slug does not spell it, separated by spaces, no descriptions, the k most
categories share said once; the rest of the prompt as usual."""

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
DIET = CategoryChoice(
    slug="diet",
    name="Dietary needs",
    description="",
    k=2,
    tags=tuple(TagChoice(slug=f"diet-{i}", name=f"Diet {i}", description="") for i in range(30)),
)
DIET_TOO = CategoryChoice(slug="allergens", name="Allergens", description="", k=2, tags=DIET.tags)
STEW = RecipeText(title="Beef stew", ingredients=["beef", "carrots"], instructions="Simmer for two hours.")


def test_a_brief_listing_says_the_shared_k_once_and_marks_a_category_with_another() -> None:
    _, user = prompt_messages(recipe=STEW, categories=[MAIN, DIET, DIET_TOO], brief_tags=True)

    assert user.startswith("Allowed tags per category, at most 2 each unless the category says otherwise:\n")
    assert "\ncourse (at most 1): main-course side (Side dish)\n" in user
    assert "\ndiet (Dietary needs): diet-0 diet-1 " in user
    assert "\nallergens: diet-0 " in user


def test_a_brief_listing_whose_categories_share_k_marks_none() -> None:
    _, user = prompt_messages(recipe=STEW, categories=[DIET, DIET_TOO], brief_tags=True)

    assert user.startswith("Allowed tags per category, at most 2 each:\n")
    assert "at most 2)" not in user


def test_a_brief_listing_lists_every_shortlisted_tag_separated_by_spaces() -> None:
    _, user = prompt_messages(recipe=STEW, categories=[DIET], brief_tags=True)

    line = next(line for line in user.splitlines() if line.startswith("diet "))
    assert line.split(": ", 1)[1].split(" ") == [f"diet-{i}" for i in range(30)]


def test_a_brief_listing_leaves_out_every_description() -> None:
    _, user = prompt_messages(recipe=STEW, categories=[MAIN], brief_tags=True)

    assert "The centre of the meal." not in user
    assert "Served beside a main course." not in user
    assert "Where the dish sits in a meal." not in user


def test_a_brief_listing_keeps_the_fenced_recipe_and_is_shorter_than_the_full_one() -> None:
    _, brief = prompt_messages(recipe=STEW, categories=[MAIN], brief_tags=True)
    _, full = prompt_messages(recipe=STEW, categories=[MAIN])

    assert "<recipe>\nTitle: Beef stew\n" in brief
    assert len(brief) < len(full)
    assert "- main-course: The centre of the meal." in full
    assert "- side — Side dish: Served beside a main course." in full
