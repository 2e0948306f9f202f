"""Request rates per client: `user`/`anon` on every request, `tag`, `llm`, `jobs` and `import` on the requests
that start work; a 429 in the API's error shape with Retry-After, counted in the shared (Redis) cache."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.test import APIClient

from autotagger.api import throttles
from autotagger.api.throttles import Rate, rate_parse
from conftest import assert_error

pytestmark = pytest.mark.django_db

TOAST = {"title": "Toast", "ingredients": ["bread", "butter"]}


@pytest.fixture
def rates(settings: Any) -> dict[str, str | None]:
    """Generous limits everywhere; a test lowers the one it checks."""
    limits: dict[str, str | None] = {
        "anon": "1000/min",
        "user": "1000/min",
        "tag": "1000/min",
        "llm": "1000/min",
        "jobs": "1000/min",
        "import": "1000/min",
    }
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": limits}
    return limits


def _limit(settings: Any, rates: dict[str, str | None], **changes: str | None) -> None:
    """Lower the limits in `changes`."""
    rates.update(changes)
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": dict(rates)}


def test_the_request_counts_live_in_redis_shared_by_every_worker() -> None:
    assert isinstance(caches["default"], RedisCache)


def test_a_client_over_its_user_rate_gets_a_429_in_the_error_shape_with_retry_after(
    settings: Any, rates: dict[str, str | None], token_client: APIClient
) -> None:
    _limit(settings, rates, user="3/min")

    answers = [token_client.get("/api/v1/categories") for _ in range(4)]

    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    error = assert_error(answers[3], status=429, code="throttled")
    assert error["details"]["scope"] == "user"
    assert error["details"]["limit"] == "3 per minute"
    retry_after = int(answers[3]["Retry-After"])
    assert 1 <= retry_after <= 60
    assert error["details"]["retry_after"] == retry_after
    assert "3 per minute" in error["message"]


def test_the_rate_holds_for_any_period_not_only_for_each_minute_of_the_clock(
    settings: Any, rates: dict[str, str | None], token_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _limit(settings, rates, user="3/min")
    minute_turns = 29_000_000 * 60_000  # a turn of a minute of the clock, in ms
    clock = {"ms": minute_turns - 100}
    monkeypatch.setattr(throttles, "clock_ms", lambda: clock["ms"])
    before_the_turn = [token_client.get("/api/v1/categories").status_code for _ in range(3)]

    clock["ms"] = minute_turns + 100
    after_the_turn = token_client.get("/api/v1/categories")
    clock["ms"] = minute_turns - 100 + 60_000 + 1
    a_minute_after_the_first = token_client.get("/api/v1/categories")

    assert before_the_turn == [200, 200, 200]
    error = assert_error(after_the_turn, status=429, code="throttled")
    assert error["details"]["retry_after"] == 60  # 59.8 s until the first request leaves the minute
    assert a_minute_after_the_first.status_code == 200


def test_each_client_has_its_own_count(
    settings: Any,
    rates: dict[str, str | None],
    token_client: APIClient,
    django_user_model: Any,
    api_client_for: Callable[[Any], APIClient],
) -> None:
    _limit(settings, rates, user="2/min")
    other = api_client_for(django_user_model.objects.create_user(username="other-app"))
    token_client.get("/api/v1/categories")
    token_client.get("/api/v1/categories")

    mine = token_client.get("/api/v1/categories")
    theirs = other.get("/api/v1/categories")

    assert mine.status_code == 429
    assert theirs.status_code == 200


def test_tagging_requests_count_against_the_tag_scope_and_reads_do_not(
    settings: Any, rates: dict[str, str | None], token_client: APIClient, taxonomy: dict[str, Any]
) -> None:
    _limit(settings, rates, tag="2/min")

    tags = [token_client.post("/api/v1/tag", TOAST, format="json").status_code for _ in range(3)]
    read = token_client.get("/api/v1/recipes")

    assert tags == [200, 200, 429]
    assert read.status_code == 200


def test_llm_and_hybrid_requests_count_against_the_llm_scope(
    settings: Any, rates: dict[str, str | None], token_client: APIClient, taxonomy: dict[str, Any]
) -> None:
    _limit(settings, rates, llm="1/min")
    settings.LLM_BASE_URL = ""  # no source: the first is refused (503) after being counted, the second throttled

    first = token_client.post("/api/v1/tag", {**TOAST, "strategy": "llm"}, format="json")
    second = token_client.post("/api/v1/tag", {**TOAST, "strategy": "hybrid"}, format="json")
    similarity = token_client.post("/api/v1/tag", TOAST, format="json")

    assert first.status_code != 429
    error = assert_error(second, status=429, code="throttled")
    assert error["details"]["scope"] == "llm"
    assert similarity.status_code == 200


def test_batch_jobs_count_against_the_jobs_scope(
    settings: Any, rates: dict[str, str | None], token_client: APIClient
) -> None:
    _limit(settings, rates, jobs="1/min")

    first = token_client.post("/api/v1/recipes/tag", {"recipe_ids": [999999]}, format="json")
    second = token_client.post("/api/v1/recipes/tag", {"recipe_ids": [999999]}, format="json")

    assert first.status_code == 400
    error = assert_error(second, status=429, code="throttled")
    assert error["details"]["scope"] == "jobs"


def test_imports_count_against_the_import_scope(
    settings: Any, rates: dict[str, str | None], staff_client: APIClient
) -> None:
    _limit(settings, rates, **{"import": "1/min"})
    body = {"recipes": [{"id": "1", **TOAST}]}

    first = staff_client.post("/api/v1/recipes/import", body, format="json")
    second = staff_client.post("/api/v1/recipes/import", body, format="json")

    assert first.status_code == 200, first.content
    error = assert_error(second, status=429, code="throttled")
    assert error["details"]["scope"] == "import"


def test_anonymous_requests_are_counted_per_ip_address(settings: Any, rates: dict[str, str | None]) -> None:
    _limit(settings, rates, anon="2/min")

    here = [APIClient(REMOTE_ADDR="10.0.0.1").get("/api/schema/").status_code for _ in range(3)]
    elsewhere = APIClient(REMOTE_ADDR="10.0.0.2").get("/api/schema/")

    assert here == [200, 200, 429]
    assert elsewhere.status_code == 200


def test_concurrent_requests_never_pass_more_than_the_rate(settings: Any, rates: dict[str, str | None]) -> None:
    _limit(settings, rates, anon="5/min")

    def one(_: int) -> int:
        return APIClient(REMOTE_ADDR="10.0.0.9").get("/api/schema/").status_code

    # One request first: drf-spectacular loads its extensions on the first schema it builds, and two threads
    # doing that at once trip over each other (a schema error, not a rate).
    first = one(0)
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(one, range(11)))

    assert first == 200
    assert sorted(statuses) == [200] * 4 + [429] * 7


def test_a_forwarded_for_header_does_not_reset_the_anonymous_count_without_a_trusted_proxy(
    settings: Any, rates: dict[str, str | None]
) -> None:
    _limit(settings, rates, anon="1/min")
    APIClient(REMOTE_ADDR="10.0.0.3").get("/api/schema/")

    response = APIClient(REMOTE_ADDR="10.0.0.3", HTTP_X_FORWARDED_FOR="203.0.113.9").get("/api/schema/")

    assert response.status_code == 429


def test_an_empty_rate_means_no_limit(settings: Any, rates: dict[str, str | None], token_client: APIClient) -> None:
    _limit(settings, rates, user=None)

    answers = {token_client.get("/api/v1/categories").status_code for _ in range(5)}

    assert answers == {200}


def test_requests_are_let_through_when_the_cache_is_unreachable(
    settings: Any, rates: dict[str, str | None], token_client: APIClient
) -> None:
    _limit(settings, rates, user="1/min")
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }

    answers = [token_client.get("/api/v1/categories").status_code for _ in range(3)]

    assert answers == [200, 200, 200]


def test_requests_are_let_through_when_the_cache_is_not_redis(
    settings: Any, rates: dict[str, str | None], token_client: APIClient
) -> None:
    _limit(settings, rates, user="1/min")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

    answers = [token_client.get("/api/v1/categories").status_code for _ in range(3)]

    assert answers == [200, 200, 200]


@pytest.mark.parametrize(
    ("text", "rate"),
    [("120/min", Rate(120, 60)), ("5/s", Rate(5, 1)), ("1000/hour", Rate(1000, 3600)), ("7/day", Rate(7, 86400))],
)
def test_rates_are_read_as_requests_per_period(text: str, rate: Rate) -> None:
    assert rate_parse(text) == rate


@pytest.mark.parametrize("text", ["fast", "10", "10/fortnight", "-1/min"])
def test_a_rate_that_is_no_rate_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a rate"):
        rate_parse(text)
