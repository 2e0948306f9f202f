"""The review flow in a real browser: a reviewer opens the queue, opens the least sure recipe, accepts one tag and
rejects another with the keyboard, adds a third found by a synonym, submits, and lands on the next recipe; the
recipe's gold labels are then what they said."""

from __future__ import annotations

from typing import Any

import pytest

from autotagger.tests.browser import expect, sign_in
from feedback.models import Feedback, GoldLabel, ReviewLease
from feedback.tests.review_helpers import waiting_run
from taxonomy.tests.conftest import CategoryFactory, TagFactory

pytestmark = pytest.mark.browser


def test_a_reviewer_corrects_a_recipe_and_moves_on_to_the_next(page: Any, reviewer: Any) -> None:
    cuisine = CategoryFactory(slug="cuisine", name="Cuisine")
    italian = TagFactory(category=cuisine, slug="italian", name="Italian")
    mexican = TagFactory(category=cuisine, slug="mexican", name="Mexican")
    TagFactory(category=cuisine, slug="greek", name="Greek", synonyms=["hellenic"])
    unsure = waiting_run({italian: 0.55, mexican: 0.45}, title="Lemon orzo salad")
    waiting_run({italian: 0.9}, title="Lasagne")
    sign_in(page, username="reviewer", password="reviewer-password", next_url="/review/")

    rows = page.locator("[data-review-queue] tbody tr")
    expect(rows.first).to_contain_text("Lemon orzo salad")
    rows.first.get_by_role("link", name="Lemon orzo salad").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Lemon orzo salad")
    # The deferred script shows the keys' hint as it attaches their handlers: keys pressed before are lost.
    expect(page.locator("[data-review-keys]")).to_be_visible()
    page.keyboard.press("j")
    page.keyboard.press("a")
    page.keyboard.press("r")
    expect(page.get_by_role("radio", name="Accept").first).to_be_checked()
    expect(page.get_by_role("radio", name="Reject").nth(1)).to_be_checked()
    page.keyboard.press("/")
    expect(page.get_by_label("Tag to add")).to_be_focused()
    page.keyboard.type("hellen")
    option = page.get_by_role("option", name="Greek (Cuisine) — also hellenic")
    expect(option).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("[data-review-added]")).to_contain_text("cuisine/greek")
    page.get_by_role("button", name="Submit review").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Lasagne")
    expect(page.get_by_role("status")).to_contain_text("Saved 3 decisions on “Lemon orzo salad”.")
    labels = set(GoldLabel.objects.filter(recipe=unsure.recipe).values_list("tag__slug", "source"))
    assert labels == {("italian", "review"), ("greek", "review")}
    decisions = set(Feedback.objects.filter(recipe=unsure.recipe).values_list("tag__slug", "decision"))
    assert decisions == {("italian", "accept"), ("mexican", "reject"), ("greek", "add")}
    assert list(ReviewLease.objects.values_list("recipe__title", flat=True)) == ["Lasagne"]
