"""Load: concurrent clients on POST /api/v1/tag (similarity) against gunicorn on loopback, and /healthz meanwhile.

Starts gunicorn (gthread workers, as a deployment would) on a free 127.0.0.1 port, on the bench database
(`autotagger_bench` on the embedded server, as bench/tagging_throughput.py; DATABASE_URL, when set, wins),
then runs `--clients` threads, each sending one request after another for `--duration` seconds, each
request a distinct short recipe (so no cache answers). A separate thread calls /healthz anonymously every
half second during the load. Prints the throughput, p50/p95/p99 of the tag requests, the errors (target 0)
and the /healthz p95, then stops gunicorn and deletes the recipes it created.

The requests authenticate with a token of the superuser `bench-load`. So that the figures measure the
service, not a per-client rate, gunicorn runs with the `tag` and `user` request rates off (API_RATE_TAG and
API_RATE_USER empty); `--env NAME=VALUE` (passed to gunicorn's environment) sets them or anything else. A
429 counts as an error, shown by status. gunicorn's own output goes to DATA_DIR/bench-load-gunicorn.log.

    .venv/bin/python bench/load.py [--clients 50] [--duration 60] [--workers 2] [--threads 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autotagger.settings.development")
os.environ.setdefault("AUTOTAGGER_EMBEDDED_DATABASE", "autotagger_bench")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["DJANGO_DEBUG"] = "false"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

TITLE_PREFIX = "Load bench"
ADJECTIVES = ["Quick", "Rustic", "Spicy", "Classic", "Smoky", "Herby", "Creamy", "Zesty", "Hearty", "Light"]
DISHES = [
    ("tomato pasta", ["200 g spaghetti", "400 g tomatoes", "2 cloves garlic", "olive oil", "basil"]),
    ("chicken curry", ["500 g chicken thighs", "1 onion", "curry paste", "400 ml coconut milk", "rice"]),
    ("lentil soup", ["200 g red lentils", "1 carrot", "1 onion", "1 l vegetable stock", "cumin"]),
    ("chocolate cake", ["200 g flour", "200 g sugar", "50 g cocoa", "3 eggs", "200 ml milk"]),
    ("beef tacos", ["400 g minced beef", "8 tortillas", "1 avocado", "salsa", "lime"]),
]
STARTUP_TIMEOUT_SECONDS = 180.0
REQUEST_TIMEOUT_SECONDS = 60.0
HEALTH_INTERVAL_SECONDS = 0.5


@dataclass
class Results:
    latencies_ms: list[float] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    health_failures: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def recipe_body(client: int, n: int) -> bytes:
    title, ingredients = DISHES[(client + n) % len(DISHES)]
    return json.dumps(
        {
            "title": f"{TITLE_PREFIX} {ADJECTIVES[n % len(ADJECTIVES)]} {title} {client}-{n}",
            "ingredients": ingredients,
            "instructions": f"Prepare the {title}: cook, season to taste and serve.",
            "strategy": "similarity",
        }
    ).encode()


def start_gunicorn(
    *, port: int, workers: int, threads: int, extra_env: dict[str, str], log: IO[bytes]
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        # Named explicitly: autotagger.wsgi defaults to the production settings.
        "DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"],
        "DJANGO_DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        # One client's rates would cap what 50 clients sharing one token can send (see the docstring).
        "API_RATE_TAG": "",
        "API_RATE_USER": "",
        **extra_env,
    }
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "autotagger.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--timeout",
        "60",
        "--graceful-timeout",
        "10",
    ]
    # Its own process group, so that stopping it stops every worker.
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)


def wait_until_healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with code {process.returncode} before it served; see its log")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"gunicorn did not answer 200 on /healthz within {STARTUP_TIMEOUT_SECONDS:.0f} s")


def stop_gunicorn(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def client_loop(*, client: int, port: int, token: str, stop_at: float, results: Results) -> None:
    headers = {"Content-Type": "application/json", "Authorization": f"Token {token}"}
    conn: http.client.HTTPConnection | None = None
    n = 0
    while time.monotonic() < stop_at:
        body = recipe_body(client, n)
        n += 1
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_SECONDS)
        started = time.perf_counter()
        try:
            conn.request("POST", "/api/v1/tag", body, headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            with results.lock:
                results.errors[type(exc).__name__] += 1
            conn.close()
            conn = None
            continue
        elapsed_ms = (time.perf_counter() - started) * 1000
        with results.lock:
            if response.status == 200:
                results.latencies_ms.append(elapsed_ms)
            else:
                results.errors[f"HTTP {response.status}"] += 1
        if response.will_close:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def health_loop(*, port: int, stop_at: float, results: Results) -> None:
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_SECONDS)
            conn.request("GET", "/healthz")
            status = conn.getresponse().status
            conn.close()
        except (OSError, http.client.HTTPException):
            status = 0
        elapsed_ms = (time.perf_counter() - started) * 1000
        with results.lock:
            results.health_ms.append(elapsed_ms)
            if status != 200:
                results.health_failures += 1
        time.sleep(max(0.0, HEALTH_INTERVAL_SECONDS - elapsed_ms / 1000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (default 4)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="more environment for gunicorn"
    )
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)

    from django.conf import settings
    from django.contrib.auth import get_user_model

    from autotagger.tokens.services import api_token_create
    from tagging.models import Recipe

    call_command("migrate", verbosity=0)
    call_command("taxonomy_import", "--default", "--if-empty", "--embed-now", verbosity=0)
    user, _ = get_user_model().objects.update_or_create(
        username="bench-load", defaults={"is_staff": True, "is_superuser": True}
    )
    _, token = api_token_create(user=user)
    Recipe.objects.filter(title__startswith=TITLE_PREFIX).delete()

    port = free_port()
    log_path = Path(settings.DATA_DIR) / "bench-load-gunicorn.log"
    log = log_path.open("wb")
    process = start_gunicorn(port=port, workers=args.workers, threads=args.threads, extra_env=extra_env, log=log)
    try:
        wait_until_healthy(port, process)
        # Warm-up: every worker thread loads what it needs before the clock starts.
        warm = Results()
        client_loop(client=-1, port=port, token=token, stop_at=time.monotonic() + 3, results=warm)

        results = Results()
        started = time.monotonic()
        stop_at = started + args.duration
        threads = [
            threading.Thread(
                target=client_loop,
                kwargs={"client": i, "port": port, "token": token, "stop_at": stop_at, "results": results},
            )
            for i in range(args.clients)
        ]
        threads.append(
            threading.Thread(target=health_loop, kwargs={"port": port, "stop_at": stop_at, "results": results})
        )
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    finally:
        stop_gunicorn(process)
        log.close()
    deleted, _ = Recipe.objects.filter(title__startswith=TITLE_PREFIX).delete()

    done = len(results.latencies_ms)
    errors = sum(results.errors.values())
    print(
        f"load: {args.clients} clients for {args.duration:.0f} s on POST /api/v1/tag (similarity), gunicorn "
        f"{args.workers} workers x {args.threads} threads (gthread), cpus: {os.cpu_count()}"
    )
    print(f"requests:    {done + errors} ({done} ok) in {elapsed:.1f} s")
    print(f"throughput:  {done / elapsed:.1f} requests/s")
    if done:
        print(
            f"latency:     p50 {statistics.median(results.latencies_ms):.0f} ms, "
            f"p95 {percentile(results.latencies_ms, 95):.0f} ms, p99 {percentile(results.latencies_ms, 99):.0f} ms"
        )
    detail = ", ".join(f"{kind}: {count}" for kind, count in sorted(results.errors.items()))
    print(f"errors:      {errors}{f' ({detail})' if detail else ''}  (target 0)")
    if results.health_ms:
        print(
            f"/healthz:    p95 {percentile(results.health_ms, 95):.0f} ms over {len(results.health_ms)} calls "
            f"during the load, {results.health_failures} not 200"
        )
    print(f"(deleted the {deleted} rows the run created)")
    if errors or results.health_failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
