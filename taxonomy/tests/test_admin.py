from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.client import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tagging.models import RunStatus, TagAssignment, TaggingRun
from tagging.tests.conftest import RecipeFactory, TagAssignmentFactory, TaggingRunFactory
from taxonomy import tasks
from taxonomy.models import Category, Tag
from taxonomy.tests.conftest import CategoryFactory, TagFactory

pytestmark = pytest.mark.django_db

CATEGORY_CHANGELIST = reverse("admin:taxonomy_category_changelist")
TAG_CHANGELIST = reverse("admin:taxonomy_tag_changelist")
EXPORT_URL = reverse("admin:taxonomy_category_export")
IMPORT_URL = reverse("admin:taxonomy_category_import")


def _run(*, title: str = "Spaghetti") -> TaggingRun:
    recipe = RecipeFactory(title=title, ingredients=["pasta"], content_hash=title)
    return TaggingRunFactory(recipe=recipe, status=RunStatus.SUCCEEDED)


def _messages(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def _queued_tag_ids(callbacks: list[Callable[[], Any]], monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Run captured on-commit callbacks with the Celery enqueue recorded instead of sent."""
    queued: list[list[int]] = []
    monkeypatch.setattr(tasks.tags_embed_task, "delay", lambda *, tag_ids: queued.append(tag_ids))
    for callback in callbacks:
        callback()
    return queued


def _tag_form(tag: Tag, **changes: Any) -> dict[str, Any]:
    """What the browser posts for an unchanged tag change form, with `changes` (None drops a field)."""
    data = {
        "category": tag.category_id,
        "name": tag.name,
        "slug": tag.slug,
        "description": tag.description,
        "synonyms": ",".join(tag.synonyms),
        # The form renders this hidden initial (ArrayField has a callable default) to detect changes.
        "initial-synonyms": ",".join(tag.synonyms),
        "_save": "Save",
    }
    if tag.active:
        data["active"] = "on"
    data.update(changes)
    return {name: value for name, value in data.items() if value is not None}


# --- Access ---------------------------------------------------------------------------------------


def _admin_urls(category: Category, tag: Tag) -> list[str]:
    return [
        CATEGORY_CHANGELIST,
        reverse("admin:taxonomy_category_change", args=[category.pk]),
        reverse("admin:taxonomy_category_add"),
        TAG_CHANGELIST,
        reverse("admin:taxonomy_tag_change", args=[tag.pk]),
        reverse("admin:taxonomy_tag_add"),
        IMPORT_URL,
    ]


def test_it_shows_the_taxonomy_pages_to_staff(staff_browser: Client, cuisine: Category) -> None:
    tag = TagFactory(category=cuisine, slug="italian", description="Pasta and pizza.", synonyms=["tuscan"])

    responses = {url: staff_browser.get(url) for url in _admin_urls(cuisine, tag)}

    assert {url: response.status_code for url, response in responses.items()} == dict.fromkeys(responses, 200)
    assert b"Cuisine" in responses[CATEGORY_CHANGELIST].content
    assert b"italian" in responses[TAG_CHANGELIST].content
    assert b"tuscan" in responses[reverse("admin:taxonomy_category_change", args=[cuisine.pk])].content


def test_it_sends_anonymous_users_to_the_admin_login(client: Client, cuisine: Category) -> None:
    tag = TagFactory(category=cuisine, slug="italian")

    responses = [client.get(url) for url in [*_admin_urls(cuisine, tag), EXPORT_URL]]

    assert [response.status_code for response in responses] == [302] * len(responses)
    assert all(response["Location"].startswith("/admin/login/") for response in responses)


def test_it_keeps_a_non_staff_user_out(client: Client, api_client_user: Any, cuisine: Category) -> None:
    tag = TagFactory(category=cuisine, slug="italian")
    client.force_login(api_client_user)

    responses = [client.get(url) for url in [*_admin_urls(cuisine, tag), EXPORT_URL]]

    assert [response.status_code for response in responses] == [302] * len(responses)
    assert all(response["Location"].startswith("/admin/login/") for response in responses)


def test_it_forbids_import_and_export_to_staff_who_cannot_change_the_taxonomy(
    client: Client, django_user_model: Any, cuisine: Category
) -> None:
    viewer = django_user_model.objects.create_user(username="viewer", is_staff=True)
    viewer.user_permissions.set(
        Permission.objects.filter(content_type__app_label="taxonomy", codename__startswith="view_")
    )
    client.force_login(viewer)

    changelist = client.get(CATEGORY_CHANGELIST)
    export = client.get(EXPORT_URL)
    upload = client.post(IMPORT_URL, {"file": SimpleUploadedFile("t.json", b'{"categories": []}')})

    assert changelist.status_code == 200
    assert EXPORT_URL.encode() not in changelist.content
    assert IMPORT_URL.encode() not in changelist.content
    assert (export.status_code, upload.status_code) == (403, 403)


# --- Category list and actions ----------------------------------------------------------------------


def test_it_counts_the_tags_of_each_category(staff_browser: Client, cuisine: Category, diet: Category) -> None:
    for slug in ("italian", "french", "thai"):
        TagFactory(category=cuisine, slug=slug)
    TagFactory(category=diet, slug="vegan")

    response = staff_browser.get(CATEGORY_CHANGELIST)

    assert {c.slug: c.tag_count for c in response.context["cl"].result_list} == {"cuisine": 3, "diet": 1}


def test_it_lists_categories_in_a_fixed_number_of_queries(staff_browser: Client) -> None:
    def changelist_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert staff_browser.get(CATEGORY_CHANGELIST).status_code == 200
        return len(queries)

    TagFactory(category=CategoryFactory(slug="cuisine"), slug="italian")
    with_one = changelist_queries()
    for index in range(5):
        TagFactory(category=CategoryFactory(slug=f"extra_{index}"), slug=f"tag-{index}")
    with_six = changelist_queries()

    assert with_six == with_one


def test_it_lists_tags_in_a_fixed_number_of_queries(staff_browser: Client, cuisine: Category) -> None:
    def changelist_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert staff_browser.get(TAG_CHANGELIST).status_code == 200
        return len(queries)

    TagFactory(category=cuisine, slug="italian")
    with_one = changelist_queries()
    for index in range(5):
        TagFactory(category=CategoryFactory(slug=f"extra_{index}"), slug=f"tag-{index}")
    with_six = changelist_queries()

    assert with_six == with_one


def test_it_deactivates_and_reactivates_selected_categories(
    staff_browser: Client, cuisine: Category, diet: Category
) -> None:
    untouched = CategoryFactory(slug="course")

    deactivated = staff_browser.post(
        CATEGORY_CHANGELIST, {"action": "deactivate", "_selected_action": [cuisine.pk, diet.pk], "index": 0}
    )
    after_deactivate = dict(Category.objects.values_list("slug", "active"))
    reactivated = staff_browser.post(
        CATEGORY_CHANGELIST, {"action": "activate", "_selected_action": [diet.pk], "index": 0}
    )

    assert deactivated.status_code == reactivated.status_code == 302
    assert after_deactivate == {"cuisine": False, "diet": False, untouched.slug: True}
    assert dict(Category.objects.values_list("slug", "active")) == {"cuisine": False, "diet": True, "course": True}
    assert _messages(reactivated) == ["Deactivated 2 categories.", "Activated 1 category."]


# --- Tag actions ------------------------------------------------------------------------------------


def test_it_deactivates_and_reactivates_selected_tags(staff_browser: Client, cuisine: Category) -> None:
    italian, french, _thai = (TagFactory(category=cuisine, slug=slug) for slug in ("italian", "french", "thai"))

    staff_browser.post(
        TAG_CHANGELIST, {"action": "deactivate", "_selected_action": [italian.pk, french.pk], "index": 0}
    )
    after_deactivate = dict(Tag.objects.values_list("slug", "active"))
    response = staff_browser.post(TAG_CHANGELIST, {"action": "activate", "_selected_action": [french.pk], "index": 0})

    assert after_deactivate == {"italian": False, "french": False, "thai": True}
    assert dict(Tag.objects.values_list("slug", "active")) == {"italian": False, "french": True, "thai": True}
    assert _messages(response) == ["Deactivated 2 tags.", "Activated 1 tag."]


def test_it_queues_selected_tags_for_re_embedding_after_commit(
    staff_browser: Client,
    cuisine: Category,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    italian, french, _thai = (TagFactory(category=cuisine, slug=slug) for slug in ("italian", "french", "thai"))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff_browser.post(
            TAG_CHANGELIST, {"action": "reembed", "_selected_action": [french.pk, italian.pk], "index": 0}
        )

    assert response.status_code == 302
    assert _queued_tag_ids(callbacks, monkeypatch) == [sorted([italian.pk, french.pk])]
    assert "Queued 2 tags for re-embedding" in _messages(response)[0]


def test_it_asks_which_tag_to_keep_before_merging(staff_browser: Client, cuisine: Category) -> None:
    pasta = TagFactory(category=cuisine, slug="pasta")
    noodles = TagFactory(category=cuisine, slug="noodles")
    TagAssignmentFactory(run=_run(), tag=noodles, score=0.8, rank=1)

    response = staff_browser.post(
        TAG_CHANGELIST, {"action": "merge_tags", "_selected_action": [pasta.pk, noodles.pk], "index": 0}
    )

    assert response.status_code == 200
    assert "admin/taxonomy/tag/merge.html" in [t.name for t in response.templates]
    content = response.content.decode()
    assert f'name="target" value="{pasta.pk}"' in content
    assert f'name="target" value="{noodles.pk}"' in content
    assert response.context["default_target_id"] == noodles.pk
    assert Tag.objects.filter(pk__in=[pasta.pk, noodles.pk]).count() == 2


def test_it_merges_the_other_tag_into_the_one_staff_keep(
    staff_browser: Client, cuisine: Category, django_capture_on_commit_callbacks: Any
) -> None:
    kept = TagFactory(category=cuisine, slug="pasta", synonyms=["spaghetti"])
    merged = TagFactory(
        category=cuisine, slug="noodles", synonyms=["udon", "Spaghetti"], description="Long thin dough."
    )
    only_merged, both = _run(title="Ramen"), _run(title="Carbonara")
    TagAssignmentFactory(run=only_merged, tag=merged, score=0.7, rank=1)
    TagAssignmentFactory(run=both, tag=kept, score=0.6, rank=1)
    TagAssignmentFactory(run=both, tag=merged, score=0.9, rank=2)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff_browser.post(
            TAG_CHANGELIST,
            {"action": "merge_tags", "_selected_action": [kept.pk, merged.pk], "post": "yes", "target": kept.pk},
        )

    assert response.status_code == 302
    assert not Tag.objects.filter(pk=merged.pk).exists()
    kept.refresh_from_db()
    assert kept.synonyms == ["spaghetti", "Noodles", "udon"]
    assert kept.description == "Long thin dough."
    assert sorted(TagAssignment.objects.filter(tag=kept).values_list("run__recipe__title", "score")) == [
        ("Carbonara", 0.9),
        ("Ramen", 0.7),
    ]
    assert len(callbacks) == 1
    assert _messages(response)[0].startswith("Merged “cuisine/noodles” into “cuisine/pasta”")


def test_it_refuses_to_merge_tags_of_two_categories(staff_browser: Client, cuisine: Category, diet: Category) -> None:
    italian = TagFactory(category=cuisine, slug="italian")
    vegan = TagFactory(category=diet, slug="vegan")
    selection = {"action": "merge_tags", "_selected_action": [italian.pk, vegan.pk]}

    asked = staff_browser.post(TAG_CHANGELIST, {**selection, "index": 0})
    forced = staff_browser.post(TAG_CHANGELIST, {**selection, "post": "yes", "target": italian.pk})

    assert (asked.status_code, forced.status_code) == (302, 302)
    assert Tag.objects.filter(pk__in=[italian.pk, vegan.pk]).count() == 2
    assert all("Only tags of the same category can be merged" in m for m in _messages(forced))


@pytest.mark.parametrize("count", [1, 3])
def test_it_refuses_to_merge_anything_but_two_tags(staff_browser: Client, cuisine: Category, count: int) -> None:
    tags = [TagFactory(category=cuisine, slug=f"tag-{index}") for index in range(count)]

    response = staff_browser.post(
        TAG_CHANGELIST, {"action": "merge_tags", "_selected_action": [t.pk for t in tags], "index": 0}
    )

    assert response.status_code == 302
    assert _messages(response) == ["Select exactly two tags to merge."]
    assert Tag.objects.count() == count


def test_it_asks_again_when_no_tag_to_keep_was_chosen(staff_browser: Client, cuisine: Category) -> None:
    pasta, noodles = TagFactory(category=cuisine, slug="pasta"), TagFactory(category=cuisine, slug="noodles")

    response = staff_browser.post(
        TAG_CHANGELIST,
        {"action": "merge_tags", "_selected_action": [pasta.pk, noodles.pk], "post": "yes", "target": "999999"},
    )

    assert response.status_code == 200
    assert "admin/taxonomy/tag/merge.html" in [t.name for t in response.templates]
    assert Tag.objects.count() == 2


# --- Editing tags schedules embedding refreshes -----------------------------------------------------------


def test_it_schedules_an_embedding_refresh_when_staff_edit_a_tag_description(
    staff_browser: Client,
    cuisine: Category,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tag = TagFactory(category=cuisine, slug="italian", description="Pasta.", synonyms=["tuscan"])

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff_browser.post(
            reverse("admin:taxonomy_tag_change", args=[tag.pk]), _tag_form(tag, description="Pasta and risotto.")
        )

    assert response.status_code == 302
    tag.refresh_from_db()
    assert tag.description == "Pasta and risotto."
    assert _queued_tag_ids(callbacks, monkeypatch) == [[tag.pk]]


def test_it_does_not_re_embed_a_tag_when_staff_only_change_active(
    staff_browser: Client, cuisine: Category, django_capture_on_commit_callbacks: Any
) -> None:
    tag = TagFactory(category=cuisine, slug="italian", description="Pasta.", synonyms=["tuscan", "sicilian"])
    page = staff_browser.get(reverse("admin:taxonomy_tag_change", args=[tag.pk]))
    assert b'name="initial-synonyms" value="tuscan,sicilian"' in page.content  # what _tag_form relies on

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff_browser.post(reverse("admin:taxonomy_tag_change", args=[tag.pk]), _tag_form(tag, active=None))

    assert response.status_code == 302
    tag.refresh_from_db()
    assert tag.active is False
    assert callbacks == []


def test_it_schedules_embedding_of_a_tag_staff_add(
    staff_browser: Client,
    cuisine: Category,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff_browser.post(
            reverse("admin:taxonomy_tag_add"),
            {"category": cuisine.pk, "name": "Thai", "slug": "thai", "synonyms": "", "active": "on"},
        )

    assert response.status_code == 302
    assert _queued_tag_ids(callbacks, monkeypatch) == [[Tag.objects.get(slug="thai").pk]]


def test_it_schedules_embedding_of_inline_tags_that_are_new_or_reworded(
    staff_browser: Client,
    cuisine: Category,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reworded = TagFactory(category=cuisine, slug="french", description="Butter.", synonyms=["sauce"])
    toggled = TagFactory(category=cuisine, slug="italian", description="Pasta.", synonyms=["tuscan"])
    data = {
        "name": cuisine.name,
        "slug": cuisine.slug,
        "description": cuisine.description,
        "default_max_tags": cuisine.default_max_tags,
        "relevance_threshold": "",
        "active": "on",
        "position": cuisine.position,
        "tags-TOTAL_FORMS": 3,
        "tags-INITIAL_FORMS": 2,
        "tags-MIN_NUM_FORMS": 0,
        "tags-MAX_NUM_FORMS": 1000,
        "tags-0-id": reworded.pk,
        "tags-0-category": cuisine.pk,
        "tags-0-name": "French",
        "tags-0-slug": "french",
        "tags-0-description": "Butter and cream.",
        "tags-0-synonyms": "sauce",
        "initial-tags-0-synonyms": "sauce",
        "tags-0-active": "on",
        "tags-1-id": toggled.pk,
        "tags-1-category": cuisine.pk,
        "tags-1-name": "Italian",
        "tags-1-slug": "italian",
        "tags-1-description": "Pasta.",
        "tags-1-synonyms": "tuscan",
        "initial-tags-1-synonyms": "tuscan",
        "tags-2-category": cuisine.pk,
        "tags-2-name": "Thai",
        "tags-2-slug": "thai",
        "tags-2-description": "Lemongrass.",
        "tags-2-synonyms": "",
        "tags-2-active": "on",
        "_save": "Save",
    }

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff_browser.post(reverse("admin:taxonomy_category_change", args=[cuisine.pk]), data)

    assert response.status_code == 302
    assert dict(Tag.objects.values_list("slug", "active")) == {"french": True, "italian": False, "thai": True}
    thai = Tag.objects.get(slug="thai")
    assert _queued_tag_ids(callbacks, monkeypatch) == [sorted([reworded.pk, thai.pk])]


def test_it_finds_tags_by_name_or_synonym(staff_browser: Client, cuisine: Category) -> None:
    TagFactory(category=cuisine, slug="italian", synonyms=["tuscan", "sicilian"])
    TagFactory(category=cuisine, slug="thai", description="Lemongrass and fish sauce.")

    by_synonym = staff_browser.get(TAG_CHANGELIST, {"q": "Tusc"})
    by_description = staff_browser.get(TAG_CHANGELIST, {"q": "lemongrass"})

    assert [t.slug for t in by_synonym.context["cl"].result_list] == ["italian"]
    assert [t.slug for t in by_description.context["cl"].result_list] == ["thai"]


def test_staff_see_and_edit_a_categorys_precision_floor(staff_browser: Client, cuisine: Category) -> None:
    change_url = reverse("admin:taxonomy_category_change", args=[cuisine.pk])

    changelist = staff_browser.get(CATEGORY_CHANGELIST).content.decode()
    form = staff_browser.get(change_url).content.decode()

    assert "Precision floor" in changelist
    assert 'name="precision_floor"' in form
    assert "empty means no floor" in form
