"""Project-wide fixtures: named users, API clients, the default taxonomy, and a real Celery worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# One BLAS thread, in this process and the workers it starts (they inherit the environment): the learned
# tagger's small logistic fits spent most of their time in OpenBLAS threads waiting for a core that the
# embedding model, the test worker and the model server are using (a replay fit took 167 s with two threads,
# 29 s with one). Set before numpy or scipy first load OpenBLAS, which reads it once; threadpoolctl below
# limits a copy that was loaded already.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest
from django.conf import settings
from django.test.client import Client
from pgvector import Vector
from rest_framework.test import APIClient
from threadpoolctl import threadpool_limits

from autotagger.tests.webhook_receiver import WebhookReceiver
from prompts.tests.llama_server import LlamaServer, LlamaServerUnavailable
from prompts.tests.openai_server import OpenAIServer

threadpool_limits(limits=int(os.environ["OPENBLAS_NUM_THREADS"]), user_api="blas")

BASE_DIR = Path(__file__).resolve().parent
DEFAULT_TAXONOMY = BASE_DIR / "taxonomy" / "data" / "default_taxonomy.json"
DEMO_RECIPES = BASE_DIR / "tagging" / "data" / "demo_recipes.json"
SHARED_DATASETS = BASE_DIR.parent / "shared" / "datasets"

# `page` (a headless Chromium at the live server) and `chromium` for the tests marked `browser`.
pytest_plugins = ["autotagger.tests.browser"]


@pytest.fixture(scope="session")
def django_db_modify_db_settings() -> None:
    """Before the test database is created, drop those of earlier runs whose process is gone."""
    import psutil
    import psycopg

    db = settings.DATABASES["default"]
    prefix = f"test_{db['NAME']}_"
    dsn = {**_connection_params(), "dbname": "postgres"}
    try:
        with psycopg.connect(**{**dsn, "autocommit": True, "connect_timeout": 10}) as conn:
            names = [
                row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",))
            ]
            for name in names:
                suffix = name.removeprefix(prefix)
                if suffix.isdigit() and not psutil.pid_exists(int(suffix)):
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:
        # No maintenance database to clean up from (a server without "postgres"): nothing to drop.
        pass


@pytest.fixture(scope="session", autouse=True)
def embedding_model() -> Any:
    """Load the embedding model once for the whole run (every test in this process shares it)."""
    from autotagger.embeddings import _get_backend

    return _get_backend()


FAST_MODEL_TEST_VOCABULARY = 5000


@pytest.fixture(scope="session")
def fast_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fast mode's static model, distilled from the local model once per run (tests that need fast mode
    point EMBEDDING_FAST_MODEL_DIR here with `fast_mode`). Of the tokenizer's commonest 5,000 tokens only: the
    full vocabulary takes minutes to distil, this ~30 s."""
    from django.test import override_settings

    from autotagger.embeddings import embedding_fast_distill

    path = tmp_path_factory.mktemp("fast-model") / "m2v"
    with override_settings(EMBEDDING_FAST_MODEL_DIR=str(path)):
        embedding_fast_distill(vocabulary_size=FAST_MODEL_TEST_VOCABULARY)
    return path


@pytest.fixture
def fast_mode(settings: Any, fast_model_dir: Path) -> Path:
    """Fast mode available: the distilled model where the settings look for it."""
    settings.EMBEDDING_FAST_MODEL_DIR = str(fast_model_dir)
    return fast_model_dir


@pytest.fixture
def no_fast_mode(settings: Any, tmp_path: Path) -> Path:
    """Fast mode not distilled on this machine."""
    settings.EMBEDDING_FAST_MODEL_DIR = str(tmp_path / "not-distilled")
    return tmp_path / "not-distilled"


@dataclass(frozen=True)
class _TaxonomyRows:
    """The rows that importing the default taxonomy (embedded) writes, without ids or timestamps."""

    categories: list[dict[str, Any]]
    tags: list[tuple[str, dict[str, Any]]]  # (category slug, field values), in the order they were created
    ingredient_groups: list[dict[str, Any]]
    excluded_by: list[tuple[int, str]]  # (index of the tag in `tags`, ingredient group slug)


_ROW_FIELDS_NOT_COPIED = {"id", "category", "created_at", "updated_at", "embedded_at"}


class _FormattedVector(Vector):
    """A vector that pgvector writes from text formatted once, not from its floats on every insert."""

    def __init__(self, value: Any) -> None:
        super().__init__(value)
        self._text = super().to_text()

    def to_text(self) -> str:
        return self._text


def _field_values(row: Any) -> dict[str, Any]:
    values = {
        field.attname: getattr(row, field.attname)
        for field in row._meta.concrete_fields
        if field.name not in _ROW_FIELDS_NOT_COPIED
    }
    if values.get("embedding") is not None:
        values["embedding"] = _FormattedVector(values["embedding"])
    return values


@pytest.fixture(scope="session")
def default_taxonomy_rows(django_db_setup: None, django_db_blocker: Any, embedding_model: Any) -> _TaxonomyRows:
    """Import and embed the default taxonomy once per run, in a transaction that is rolled back, and keep
    the rows it wrote in memory."""
    from django.db import transaction

    from taxonomy.models import Category, IngredientGroup, Tag
    from taxonomy.services.documents import taxonomy_import

    with django_db_blocker.unblock(), transaction.atomic():
        taxonomy_import(data=json.loads(DEFAULT_TAXONOMY.read_text()), embed_now=True)
        categories = [_field_values(c) for c in Category.objects.order_by("id")]
        tag_rows = list(Tag.objects.select_related("category").prefetch_related("excluded_by").order_by("id"))
        tags = [(t.category.slug, _field_values(t)) for t in tag_rows]
        groups = [_field_values(g) for g in IngredientGroup.objects.order_by("id")]
        excluded_by = [(i, g.slug) for i, t in enumerate(tag_rows) for g in t.excluded_by.all()]
        transaction.set_rollback(True)
    return _TaxonomyRows(categories=categories, tags=tags, ingredient_groups=groups, excluded_by=excluded_by)


@pytest.fixture
def taxonomy(default_taxonomy_rows: _TaxonomyRows, db: None) -> dict[str, Any]:
    """The default recipe taxonomy, loaded and embedded: the rows `taxonomy_import(embed_now=True)` writes,
    inserted from the copy `default_taxonomy_rows` keeps (a few queries instead of an import per test)."""
    from django.utils import timezone

    from taxonomy.models import Category, IngredientGroup, Tag

    categories = Category.objects.bulk_create([Category(**row) for row in default_taxonomy_rows.categories])
    ids = {category.slug: category.pk for category in categories}
    tags = Tag.objects.bulk_create([Tag(category_id=ids[slug], **row) for slug, row in default_taxonomy_rows.tags])
    groups = IngredientGroup.objects.bulk_create(
        [IngredientGroup(**row) for row in default_taxonomy_rows.ingredient_groups]
    )
    group_ids = {group.slug: group.pk for group in groups}
    Tag.excluded_by.through.objects.bulk_create(
        [
            Tag.excluded_by.through(tag_id=tags[index].pk, ingredientgroup_id=group_ids[slug])
            for index, slug in default_taxonomy_rows.excluded_by
        ]
    )
    # Stamped after the tags were saved, as the import does: a vector older than its tag counts as stale.
    Tag.objects.filter(pk__in=[tag.pk for tag in tags]).update(embedded_at=timezone.now())
    return json.loads(DEFAULT_TAXONOMY.read_text())


@pytest.fixture(scope="session")
def demo_recipes() -> list[dict[str, Any]]:
    """The demo recipes' JSON, read once: tests only read it."""
    return json.loads(DEMO_RECIPES.read_text())


@pytest.fixture
def staff(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(
        username="staff", password="staff-password", is_staff=True, is_superuser=True
    )


def reviewers_group() -> Any:
    """The "reviewers" group as its migration (tagging 0010_reviewers_group) makes it; made again here after a
    transactional test emptied the database."""
    from django.contrib.auth.models import Group, Permission

    from autotagger.permissions import REVIEWERS_GROUP

    group, created = Group.objects.get_or_create(name=REVIEWERS_GROUP)
    if created:
        group.permissions.add(
            *Permission.objects.filter(
                content_type__app_label="tagging",
                codename__in=["view_recipe", "view_taggingrun", "view_taggingjob", "view_tagassignment"],
            )
        )
    return group


@pytest.fixture
def reviewer(django_user_model: Any) -> Any:
    """A person who signs in to review tags: in the reviewers group, without staff rights."""
    user = django_user_model.objects.create_user(username="reviewer", password="reviewer-password")
    user.groups.add(reviewers_group())
    return user


@pytest.fixture
def api_client_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="app", password="app-password")


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture
def api_client_for(db: None) -> Callable[[Any], APIClient]:
    """Makes an API client that calls as `user` with a token staff issued to them (the one place that knows how
    tokens are made)."""

    def make(user: Any) -> APIClient:
        from autotagger.tokens.services import api_token_create

        _, key = api_token_create(user=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return client

    return make


@pytest.fixture
def token_client(api_client_user: Any, api_client_for: Callable[[Any], APIClient]) -> APIClient:
    """An app calling the API with a token that staff issued."""
    return api_client_for(api_client_user)


@pytest.fixture
def staff_client(staff: Any) -> APIClient:
    client = APIClient()
    client.force_login(staff)
    return client


@pytest.fixture
def staff_browser(client: Client, staff: Any) -> Client:
    """Django's test client (pages and forms, not the API), signed in as staff."""
    client.force_login(staff)
    return client


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    server = OpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture
def webhook_receiver(settings: Any) -> Iterator[WebhookReceiver]:
    """A real local HTTP endpoint that verifies webhook signatures with the secret it shares with the settings,
    with quick retries."""
    settings.RETAG_WEBHOOK_SECRET = "shared-webhook-secret"
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.01
    receiver = WebhookReceiver(secret=settings.RETAG_WEBHOOK_SECRET).start()
    settings.RETAG_WEBHOOK_URL = receiver.url
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """A real llama.cpp server with Gemma 3 270M (prompts/tests/llama_server.py), started once per run and
    stopped with its whole process group. When it cannot start, the tests using it fail and say why."""
    try:
        server = LlamaServer.start()
    except LlamaServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def llm_settings(settings: Any, openai_server: OpenAIServer) -> Any:
    """The "default" LLM source at the test server, with quick retries and prices that make costs visible,
    and no spend carried over from another test in Redis."""
    from prompts.tests.helpers import spending_cap_reset

    settings.LLM_BASE_URL = openai_server.url
    settings.LLM_MODEL = "test-model"
    settings.LLM_API_KEY = "test-key"  # as if from AUTOTAGGER_LLM_KEY_DEFAULT
    settings.LLM_DEFAULT_SOURCE = "default"
    settings.LLM_TIMEOUT_SECONDS = 5.0
    settings.LLM_MAX_CONCURRENCY = 4
    settings.LLM_PRICE_INPUT_PER_1K = 0.5
    settings.LLM_PRICE_OUTPUT_PER_1K = 1.5
    settings.LLM_SUPPORTS_JSON_SCHEMA = True
    settings.LLM_RESPONSE_FORMAT = ""
    settings.LLM_MAX_RETRIES = 3
    settings.LLM_RETRY_BASE_SECONDS = 0.01
    settings.LLM_RETRY_MAX_SECONDS = 0.05
    settings.LLM_SLOT_WAIT_SECONDS = 2.0
    settings.LLM_DAILY_SPEND_CAP = 0.0
    settings.LLM_MAX_OUTPUT_TOKENS = 4096
    spending_cap_reset()
    return settings


def _connection_params() -> dict[str, Any]:
    """psycopg's view of the default database (the embedded server puts its socket folder in OPTIONS)."""
    from django.db import connection

    return connection.get_connection_params()


def _worker_database_url() -> str:
    from urllib.parse import quote

    params = _connection_params()
    host = str(params.get("host") or "")
    credentials = f"{quote(str(params.get('user') or ''))}:{quote(str(params.get('password') or ''))}"
    if not host or host.startswith("/"):
        return f"postgresql://{credentials}@/{params['dbname']}?host={quote(host)}"
    return f"postgresql://{credentials}@{host}:{params.get('port') or 5432}/{params['dbname']}"


def worker_start(*, queue: str, log_path: Path, pool: tuple[str, ...] = ("--pool=solo",)) -> subprocess.Popen[bytes]:
    """A real Celery worker process consuming `queue` on the test database, once it is ready; its output goes
    to `log_path`. Stop it with worker_stop."""
    process = _worker_spawn(queue=queue, log_path=log_path, pool=pool)
    _worker_wait_ready(process, log_path)
    return process


def _worker_spawn(*, queue: str, log_path: Path, pool: tuple[str, ...]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "autotagger.settings.test",
        "DATABASE_URL": _worker_database_url(),
        # The broker this run resolved (the local Redis or the embedded one), so the worker never probes again.
        "TEST_REDIS_URL": settings.REDIS_URL,
        "AUTOTAGGER_TEST_QUEUE": queue,
    }
    log = open(log_path, "wb")  # noqa: SIM115 - the worker writes to it until it stops
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "autotagger",
            "worker",
            *pool,
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-Q",
            queue,
            "--loglevel=INFO",
        ],
        env=env,
        cwd=BASE_DIR,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    return process


def _worker_wait_ready(process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if b"ready." in log_path.read_bytes():
            return
        time.sleep(0.2)
    process.kill()
    process.wait(timeout=10)
    pytest.fail(f"The Celery worker did not start; see {log_path}")


def worker_stop(*processes: subprocess.Popen[bytes]) -> None:
    """Stop workers at the end of a test, killed with their pool's children (each leads its own process group):
    what they still hold is the test's to throw away, and a warm or cold shutdown waited 5-10 s per worker for
    the steps still in flight. PostgreSQL ends a killed client's session and rolls back what it held."""
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()
    for process in processes:
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup: None, django_db_blocker: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker, in its own process, consuming the tests' queue on the test database.

    It depends on django_db_setup so that it stops before the test database is dropped.
    """
    from autotagger.redis import redis_client

    client = redis_client()
    client.delete(settings.CELERY_TASK_DEFAULT_QUEUE)
    log_path = BASE_DIR / ".data" / f"test-worker-{os.getpid()}.log"
    process = worker_start(queue=settings.CELERY_TASK_DEFAULT_QUEUE, log_path=log_path)
    yield process
    worker_stop(process)
    log_path.unlink(missing_ok=True)
    client.delete(settings.CELERY_TASK_DEFAULT_QUEUE)


@pytest.fixture
def two_celery_workers(settings: Any) -> Iterator[list[tuple[subprocess.Popen[bytes], Path]]]:
    """Two real Celery worker processes (one task at a time each) consuming a queue of their own, which this
    test's tasks are sent to; each with its log (which tasks it received and finished)."""
    from autotagger.redis import redis_client

    queue = f"autotagger-test-two-workers-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    workers = []
    try:
        # Started together and stopped together: each takes seconds to import the project and to shut down.
        for number in (1, 2):
            log_path = BASE_DIR / ".data" / f"test-worker-{number}-of-two-{os.getpid()}.log"
            workers.append((_worker_spawn(queue=queue, log_path=log_path, pool=("--pool=solo",)), log_path))
        for process, log_path in workers:
            _worker_wait_ready(process, log_path)
        yield workers
    finally:
        worker_stop(*(process for process, _ in workers))
        for _, log_path in workers:
            log_path.unlink(missing_ok=True)
        redis_client().delete(queue)


def wait_for(predicate: Any, *, timeout: float = 30.0, interval: float = 0.1) -> bool:
    """Poll `predicate` until it is truthy or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return bool(value)
        time.sleep(interval)


def assert_error(response: Any, *, status: int, code: str) -> dict[str, Any]:
    """The API's error object ({"error": {"code", "message", "details"}}), after checking its status and code."""
    assert response.status_code == status, response.content
    body = response.json()
    assert list(body) == ["error"]
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


@pytest.fixture
def migrator(transactional_db: None) -> Iterator[Any]:
    """A migration executor on the test database, for tests that migrate back and forth; it migrates forward
    to the latest state afterwards, as every other test expects."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    yield MigrationExecutor(connection)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def apps_at(executor: Any, targets: list[tuple[str, str]]) -> Any:
    """The historical models after migrating to `targets`."""
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps
