"""rows_insert: many new rows written with one COPY, their primary keys returned in row order."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from autotagger.bulk_updates import rows_insert
from tagging.models import TagAssignment, TaggingRun
from tagging.tests.conftest import RecipeFactory
from taxonomy.models import Tag

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]


def test_it_inserts_every_row_and_returns_their_ids_in_row_order() -> None:
    run = TaggingRun.objects.create(recipe=RecipeFactory(title="Soup"), strategy="similarity")
    tags = list(Tag.objects.order_by("id")[:3])

    with CaptureQueriesContext(connection) as queries:
        ids = rows_insert(
            model=TagAssignment,
            fields=["run", "tag", "score", "rank", "evidence"],
            rows=[(run.pk, tag.pk, 0.9 - i / 10, i + 1, {"i": i}) for i, tag in enumerate(tags)],
            with_ids=True,
        )

    assert len(queries) == 1  # the ids from the sequence; the COPY goes past Django's query log
    stored = TagAssignment.objects.in_bulk(ids)
    assert [(stored[pk].tag_id, stored[pk].rank, stored[pk].evidence) for pk in ids] == [
        (tag.pk, i + 1, {"i": i}) for i, tag in enumerate(tags)
    ]
    assert len(set(ids)) == 3


def test_it_stores_json_and_numbers_as_the_orm_reads_them_back() -> None:
    run = TaggingRun.objects.create(recipe=RecipeFactory(title="Soup"), strategy="similarity")
    tags = list(Tag.objects.order_by("id")[:2])
    evidence = {"decided_by": "zero_shot", "matched": {"title": ["soup"]}, "similarity": 0.4321, "note": "l'été"}

    returned = rows_insert(
        model=TagAssignment,
        fields=["run", "tag", "score", "rank", "evidence"],
        rows=[(run.pk, tags[0].pk, 0.1 + 0.2, 1, evidence), (run.pk, tags[1].pk, 0.5, 2, {})],
    )

    assert returned == []
    stored = list(TagAssignment.objects.filter(run=run).order_by("rank"))
    assert [(a.tag_id, a.score, a.rank, a.evidence) for a in stored] == [
        (tags[0].pk, 0.1 + 0.2, 1, evidence),
        (tags[1].pk, 0.5, 2, {}),
    ]


def test_it_writes_nothing_for_no_rows() -> None:
    with CaptureQueriesContext(connection) as queries:
        ids = rows_insert(model=TaggingRun, fields=["strategy"], rows=[], with_ids=True)

    assert ids == []
    assert len(queries) == 0
