"""The OpenAPI document and the two documentation pages that render it (Swagger UI and Redoc)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from pytest_django import Settings

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
CDN_MARKERS = ("cdn.", "jsdelivr", "unpkg")


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    GENERATOR_STATS.reset()
    generated = SchemaGenerator().get_schema(request=None, public=True)
    # drf-spectacular reports problems here instead of raising; they must be read before the next run.
    problems = {"warnings": dict(GENERATOR_STATS._warn_cache), "errors": dict(GENERATOR_STATS._error_cache)}
    GENERATOR_STATS.reset()
    return {"document": generated, "problems": problems}


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def _asset_urls(html: str) -> list[str]:
    return re.findall(r'<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)"', html)


def test_the_schema_generates_without_warnings_or_errors(schema: dict[str, Any]) -> None:
    assert schema["problems"] == {"warnings": {}, "errors": {}}


def test_the_schema_is_a_valid_openapi_document(schema: dict[str, Any]) -> None:
    document = schema["document"]

    validate_schema(document)

    assert document["info"]["title"] == "AutoTagger API"
    assert "/api/v1/categories" in document["paths"]
    assert "/api/v1/tag" in document["paths"]


def test_every_operation_has_a_summary_or_description(schema: dict[str, Any]) -> None:
    operations = _operations(schema["document"])

    undocumented = [f"{m.upper()} {p}" for p, m, op in operations if not (op.get("summary") or op.get("description"))]

    assert len(operations) >= 10
    assert undocumented == []


def test_every_operation_documents_at_least_one_4xx_response(schema: dict[str, Any]) -> None:
    operations = _operations(schema["document"])

    without_4xx = [
        f"{m.upper()} {p}" for p, m, op in operations if not any(code.startswith("4") for code in op["responses"])
    ]

    assert without_4xx == []


def test_the_4xx_responses_use_the_error_object(schema: dict[str, Any]) -> None:
    operations = _operations(schema["document"])

    refs = {
        (f"{m.upper()} {p}", code): response.get("content", {})
        .get("application/json", {})
        .get("schema", {})
        .get("$ref")
        for p, m, op in operations
        for code, response in op["responses"].items()
        if code.startswith("4")
    }

    assert set(refs.values()) == {"#/components/schemas/Error"}


@pytest.mark.django_db
def test_the_schema_is_served_to_anonymous_visitors(client: Client) -> None:
    response = client.get("/api/schema/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert b"title: AutoTagger API" in response.content


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "schema_link"),
    [
        pytest.param("/api/docs/", 'url: "/api/schema/"', id="/api/docs/"),
        pytest.param("/api/redoc/", '<redoc spec-url="/api/schema/">', id="/api/redoc/"),
    ],
)
def test_the_documentation_pages_load_their_scripts_from_static_and_no_cdn(
    client: Client, url: str, schema_link: str
) -> None:
    response = client.get(url)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    scripts = re.findall(r'<script\b[^>]*\bsrc="([^"]+)"', html)
    assert scripts
    assert all(src.startswith("/static/drf_spectacular_sidecar/") for src in scripts), scripts
    assert [marker for marker in CDN_MARKERS if marker in html] == []
    assert re.findall(r"https?://", html) == []  # nothing from another site: no CDN, no web fonts
    assert html.count(schema_link) == 1  # the page reads our schema


@pytest.mark.django_db
def test_every_asset_of_the_swagger_page_is_served_from_static(client: Client) -> None:
    response = client.get("/api/docs/")

    assets = _asset_urls(response.content.decode())
    assert len(assets) == 4  # favicon, stylesheet and two scripts
    assert all(url.startswith("/static/drf_spectacular_sidecar/swagger-ui-dist/") for url in assets), assets


@pytest.mark.django_db
def test_every_asset_of_the_redoc_page_is_served_from_static(client: Client) -> None:
    response = client.get("/api/redoc/")

    html = response.content.decode()
    assert _asset_urls(html) == ["/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_the_static_assets_of_the_documentation_pages_are_served(client: Client, settings: Settings, url: str) -> None:
    # In production WhiteNoise serves the collected files; here it serves them from the finders (as in
    # development), which are where collectstatic collects them from.
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True
    assets = [src for src in _asset_urls(client.get(url).content.decode()) if src.startswith("/static/")]

    responses = {src: Client().get(src) for src in assets}

    assert assets
    for src, response in responses.items():
        path = finders.find(src.removeprefix("/static/"))
        assert path is not None, src
        assert response.status_code == 200, src
        assert b"".join(response.streaming_content) == Path(path).read_bytes(), src


def test_every_operation_declares_the_errors_any_request_can_meet(schema: dict[str, Any]) -> None:
    operations = _operations(schema["document"])

    missing = {
        f"{m.upper()} {p}": sorted({"400", "401", "403", "406", "415", "429", "503"} - set(op["responses"]))
        for p, m, op in operations
    }

    assert {name: codes for name, codes in missing.items() if codes} == {}


def test_the_429_declares_its_retry_after_header(schema: dict[str, Any]) -> None:
    operations = _operations(schema["document"])

    headers = {op["responses"]["429"]["headers"]["Retry-After"]["required"] for _, _, op in operations}

    assert headers == {True}


def test_operations_declare_the_errors_of_their_kind(schema: dict[str, Any]) -> None:
    operations = {(m, p): op["responses"] for p, m, op in _operations(schema["document"])}

    with_body = {key for key in operations if key[0] in ("post", "put", "patch")}
    with_id = {key for key in operations if "{" in key[1]}

    assert all("413" in operations[key] for key in with_body)
    assert all("404" in operations[key] for key in with_id)
    assert "404" in operations[("get", "/api/v1/recipes")]  # a page past the last
    assert {"409"} <= set(operations[("post", "/api/v1/recipes")])
    assert {"409"} <= set(operations[("put", "/api/v1/recipes/{recipe_id}")])
    assert {"409"} <= set(operations[("patch", "/api/v1/recipes/{recipe_id}")])
    assert "409" not in operations[("post", "/api/v1/tag")]


# A process of its own: drf-spectacular loads its extension classes once per process, on the first schema it builds.
FIRST_BUILDS_AT_ONCE = """
import django
django.setup()
from concurrent.futures import ThreadPoolExecutor
from django.test import Client

def status(_):
    return Client().get("/api/schema/").status_code

with ThreadPoolExecutor(max_workers=8) as pool:
    print(sorted(set(pool.map(status, range(8)))))
"""


def test_the_first_schemas_a_new_process_builds_at_once_are_all_served() -> None:
    project = Path(__file__).resolve().parents[2]
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "autotagger.settings.test"}

    result = subprocess.run(
        [sys.executable, "-c", FIRST_BUILDS_AT_ONCE],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[200]"
