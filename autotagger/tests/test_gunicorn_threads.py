"""The web server as `make run` starts it (the Procfile's gunicorn command line): requests that wait for the
Celery worker ("wait") hold a thread each, so other requests are still answered at once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from autotagger.redis import redis_client
from conftest import BASE_DIR, _worker_database_url, wait_for
from tagging.tests.conftest import RecipeFactory

pytestmark = pytest.mark.django_db(transaction=True)

# A queue no worker consumes: the runs stay queued, so every "wait" lasts its full length.
UNCONSUMED_QUEUE = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-unconsumed"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _procfile_gunicorn_arguments() -> str:
    web = next(line for line in (BASE_DIR / "Procfile").read_text().splitlines() if line.startswith("web:"))
    return web.split("gunicorn", 1)[1]


def _request(url: str, *, authorization: str, body: dict[str, object] | None = None) -> tuple[int, float]:
    """(status, seconds taken)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, headers={"Authorization": authorization, "Content-Type": "application/json"}
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.monotonic() - started


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError:
        return True  # a 404 from the app: it is serving
    except OSError:
        return False
    return True


@pytest.fixture
def gunicorn_url(tmp_path: Path) -> Iterator[str]:
    """gunicorn with the Procfile's arguments, one worker process (of 4 threads), on the test database."""
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "autotagger.settings.test",
        "DATABASE_URL": _worker_database_url(),
        "AUTOTAGGER_TEST_QUEUE": UNCONSUMED_QUEUE,
        "AUTOTAGGER_PORT": str(port),
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "4",
        "AUTOTAGGER_PRELOAD_MODEL": "0",
    }
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - closed at teardown
    process = subprocess.Popen(
        ["sh", "-c", f"exec {sys.executable} -m gunicorn {_procfile_gunicorn_arguments()}"],
        env=env,
        cwd=BASE_DIR,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_for(lambda: process.poll() is None and _answers(f"{url}/api/v1/"), timeout=90, interval=0.5):
            pytest.fail(f"gunicorn did not start: {(tmp_path / 'gunicorn.log').read_text()[-2000:]}")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        log.close()
        redis_client().delete(UNCONSUMED_QUEUE)


def test_requests_waiting_for_the_worker_leave_the_web_worker_free_for_others(
    gunicorn_url: str, token_client: APIClient, api_client_user: Any, taxonomy: dict[str, object]
) -> None:
    authorization = token_client._credentials["HTTP_AUTHORIZATION"]
    recipe = RecipeFactory(created_by=api_client_user)
    _request(f"{gunicorn_url}/api/v1/categories", authorization=authorization)  # warm up the worker

    with ThreadPoolExecutor(max_workers=2) as pool:
        waiting = [
            pool.submit(
                _request,
                f"{gunicorn_url}/api/v1/recipes/{recipe.pk}/tag",
                authorization=authorization,
                body={"async": True, "wait": 5},
            )
            for _ in range(2)
        ]
        time.sleep(1.0)
        meanwhile = _request(f"{gunicorn_url}/api/v1/categories", authorization=authorization)
        waited = [future.result() for future in waiting]

    assert meanwhile[0] == 200
    assert meanwhile[1] < 3.0, f"a request took {meanwhile[1]:.1f} s while two others waited"
    assert [status for status, _ in waited] == [202, 202]
    assert all(seconds >= 4.5 for _, seconds in waited)
