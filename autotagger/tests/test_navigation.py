"""The main navigation: each role sees the links to the pages it may open."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def nav_links(user: Any) -> str:
    client = Client()
    client.force_login(user)
    page = client.get("/").content.decode()
    return page[page.index('<nav class="nav container"') : page.index("</nav>")]


def test_a_reviewer_finds_the_review_queue_and_the_feedback_page_but_not_admin(reviewer: Any) -> None:
    nav = nav_links(reviewer)

    assert 'href="/review/"' in nav
    assert 'href="/feedback/"' in nav
    assert "/admin/" not in nav


def test_staff_find_the_review_queue_beside_admin(staff: Any) -> None:
    nav = nav_links(staff)

    assert 'href="/review/"' in nav
    assert "/admin/" in nav


def test_an_api_client_is_not_shown_pages_it_may_not_open(api_client_user: Any) -> None:
    nav = nav_links(api_client_user)

    assert 'href="/review/"' not in nav
    assert 'href="/feedback/"' not in nav
