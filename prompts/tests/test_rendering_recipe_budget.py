"""The recipe within a token budget (prompt_messages with recipe_max_tokens, the hybrid's
HYBRID_RECIPE_MAX_TOKENS): the title and every ingredient are always shown, the instructions get what is left."""

from __future__ import annotations

from autotagger.recipe_text import RecipeText
from prompts.rendering import CHARS_PER_TOKEN, CategoryChoice, TagChoice, prompt_messages

CUISINE = CategoryChoice(
    slug="cuisine",
    name="Cuisine",
    description="",
    k=1,
    tags=(TagChoice(slug="italian", name="Italian", description=""),),
)
STEPS = " ".join(f"Step {i}: stir the sauce and taste it." for i in range(1, 60))
LASAGNE = RecipeText(
    title="Lasagne with a slow-cooked ragù of beef and pork",
    ingredients=[f"{i} g of ingredient number {i}" for i in range(1, 31)],
    instructions=STEPS,
)


def fenced(user: str) -> str:
    return user.split("<recipe>\n", 1)[1].split("\n</recipe>", 1)[0]


def test_a_budget_never_cuts_the_title_or_an_ingredient() -> None:
    _, user = prompt_messages(recipe=LASAGNE, categories=[CUISINE], recipe_max_tokens=10)

    shown = fenced(user)
    assert shown.startswith(f"Title: {LASAGNE.title}\nIngredients:\n")
    assert [line[2:] for line in shown.splitlines() if line.startswith("- ")] == LASAGNE.ingredients


def test_a_budget_smaller_than_title_and_ingredients_leaves_the_instructions_out() -> None:
    _, user = prompt_messages(recipe=LASAGNE, categories=[CUISINE], recipe_max_tokens=10)

    assert "Instructions:" not in fenced(user)
    assert "Step 1" not in user


def test_the_instructions_get_what_the_budget_leaves_cut_at_a_word() -> None:
    _, whole = prompt_messages(recipe=LASAGNE, categories=[CUISINE])
    _, bounded = prompt_messages(recipe=LASAGNE, categories=[CUISINE], recipe_max_tokens=300)

    shown = fenced(bounded)
    instructions = shown.split("\nInstructions:\n", 1)[1]
    assert len(shown) <= 300 * CHARS_PER_TOKEN
    assert len(shown) > 300 * CHARS_PER_TOKEN - 40
    assert instructions.startswith("Step 1: stir the sauce")
    assert instructions.endswith("…")
    assert STEPS.startswith(instructions[:-1])
    assert STEPS[len(instructions) - 1] == " "
    assert fenced(whole).endswith(STEPS)


def test_a_recipe_within_the_budget_is_shown_whole() -> None:
    short = RecipeText(title="Toast", ingredients=["bread"], instructions="Toast the bread.")

    _, bounded = prompt_messages(recipe=short, categories=[CUISINE], recipe_max_tokens=200)
    _, whole = prompt_messages(recipe=short, categories=[CUISINE])

    assert bounded == whole


# --- the sentences that name a listed tag come first ----------------------------------------------------------

METHOD = CategoryChoice(
    slug="method",
    name="Method",
    description="",
    k=1,
    tags=(
        TagChoice(slug="fry", name="Fry", description=""),
        TagChoice(slug="slow-cooker", name="Slow cooker", description="", synonyms=("crockpot",)),
    ),
)
FILLER = " ".join(f"Step {i}: stir the sauce and taste it." for i in range(1, 40))


def instructions_shown(recipe: RecipeText, *, budget: int, categories: list[CategoryChoice]) -> str:
    _, user = prompt_messages(recipe=recipe, categories=categories, recipe_max_tokens=budget)
    return fenced(user).split("\nInstructions:\n", 1)[1]


def test_a_sentence_naming_a_listed_tag_is_shown_though_the_budget_cuts_before_it() -> None:
    recipe = RecipeText(title="Chips", ingredients=["potatoes"], instructions=f"{FILLER} Fry until golden.")

    shown = instructions_shown(recipe, budget=60, categories=[METHOD])
    beginning = instructions_shown(recipe, budget=60, categories=[CUISINE])

    assert "Fry until golden." in shown
    assert "Fry" not in beginning, "nothing of the cuisine's is named: the beginning, as before"
    _, user = prompt_messages(recipe=recipe, categories=[METHOD], recipe_max_tokens=60)
    assert len(fenced(user)) <= 60 * CHARS_PER_TOKEN


def test_the_sentences_kept_keep_their_order_and_a_gap_is_marked() -> None:
    recipe = RecipeText(
        title="Stew",
        ingredients=["beef"],
        instructions=f"Brown the beef. {FILLER} Put it all in the crockpot. {FILLER} Serve hot.",
    )

    shown = instructions_shown(recipe, budget=60, categories=[METHOD])

    assert shown.startswith("Brown the beef. Step 1:")
    assert "… Put it all in the crockpot. …" in shown, "named by a synonym, between two cuts"
    assert shown.index("Brown") < shown.index("crockpot") < shown.index("Serve hot."), "a short one fits after"


def test_a_tag_is_named_by_every_word_of_it_at_the_start_of_words_as_written() -> None:
    frying = RecipeText(title="Eggs", ingredients=["eggs"], instructions=f"{FILLER} Keep frying gently.")
    slow_only = RecipeText(title="Eggs", ingredients=["eggs"], instructions=f"{FILLER} Cook it slowly.")
    both = RecipeText(title="Eggs", ingredients=["eggs"], instructions=f"{FILLER} A slow cooker does it.")

    assert "Keep frying gently." in instructions_shown(frying, budget=60, categories=[METHOD])
    assert "Cook it slowly." not in instructions_shown(slow_only, budget=60, categories=[METHOD])
    assert "A slow cooker does it." in instructions_shown(both, budget=60, categories=[METHOD])


def test_without_a_budget_the_instructions_are_shown_whole_whatever_they_name() -> None:
    recipe = RecipeText(title="Chips", ingredients=["potatoes"], instructions=f"{FILLER} Fry until golden.")

    _, user = prompt_messages(recipe=recipe, categories=[METHOD])

    assert fenced(user).endswith(f"{FILLER} Fry until golden.")
