"""Tagging throughput and latency, measured in one run so the ratios are comparable.

Prints:
- the raw encode rate of the embedding model on the benchmark recipes (the ceiling),
- the service's bulk tagging rate on the same recipes (embed + score + store), and its ratio to the
  raw rate (target: at least 0.8),
- the single-recipe API latency p50/p95 over 200 requests to POST /api/v1/tag, over real HTTP to a
  server in this process (target: p50 under 60 ms for a short recipe).

Uses its own database (`autotagger_bench` on the embedded server, recreated each run) unless
DATABASE_URL is set, in which case it writes benchmark recipes there.

    .venv/bin/python bench/tagging_throughput.py [--recipes 400] [--requests 200]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autotagger.settings.development")
os.environ.setdefault("AUTOTAGGER_EMBEDDED_DATABASE", "autotagger_bench")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["DJANGO_DEBUG"] = "false"
# One client sends every request here: measure latency, not the per-client request rates (API_RATE_*).
os.environ.setdefault("API_RATE_USER", "")
os.environ.setdefault("API_RATE_TAG", "")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

ADJECTIVES = ["Quick", "Rustic", "Spicy", "Classic", "Smoky", "Herby", "Creamy", "Zesty", "Hearty", "Light"]
EXTRAS = ["a pinch of chilli flakes", "fresh parsley", "a squeeze of lemon", "toasted seeds", "grated cheese"]


def benchmark_recipes(count: int) -> list[dict[str, object]]:
    """Distinct variants of the demo recipes (distinct text, so nothing is served from a cache)."""
    demo = json.loads((ROOT / "tagging" / "data" / "demo_recipes.json").read_text())
    recipes = []
    for i in range(count):
        base = demo[i % len(demo)]
        recipes.append(
            {
                "title": f"{ADJECTIVES[i % len(ADJECTIVES)]} {base['title']} no. {i}",
                "ingredients": [*base["ingredients"], EXTRAS[i % len(EXTRAS)]],
                "instructions": base["instructions"],
            }
        )
    return recipes


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", type=int, default=400, help="recipes for the encode and bulk figures")
    parser.add_argument("--requests", type=int, default=200, help="API requests for the latency figures")
    args = parser.parse_args()

    from django.conf import settings
    from django.contrib.auth import get_user_model

    from autotagger.embeddings import _get_backend, embeddings_cache_clear, embeddings_create
    from autotagger.recipe_text import RecipeText
    from autotagger.tokens.services import api_token_create
    from tagging.models import Recipe, TaggingRun
    from tagging.services.config import TaggingConfig
    from tagging.services.recipes import recipe_create
    from tagging.services.runs import recipes_tag_bulk

    call_command("migrate", verbosity=0)
    call_command("taxonomy_import", "--default", "--if-empty", "--embed-now", verbosity=0)
    TaggingRun.objects.filter(recipe__source="bench").delete()
    Recipe.objects.filter(source="bench").delete()

    backend = _get_backend()
    print(f"model: {backend.model_name}  dimensions: {settings.EMBEDDING_DIMENSIONS}  cpus: {os.cpu_count()}")
    data = benchmark_recipes(args.recipes)
    texts = [RecipeText(r["title"], r["ingredients"], r["instructions"]).for_embedding() for r in data]  # type: ignore[arg-type]
    embeddings_create(texts=texts[:16])  # warm-up: first calls allocate

    # 1. The ceiling: the model alone on the same texts.
    embeddings_cache_clear()
    started = time.perf_counter()
    embeddings_create(texts=texts)
    raw_seconds = time.perf_counter() - started
    raw_rate = len(texts) / raw_seconds

    # 2. The service: embed, score in pgvector, store runs and assignments.
    recipes = [
        recipe_create(
            title=r["title"],
            ingredients=r["ingredients"],
            instructions=r["instructions"],
            source="bench",  # type: ignore[arg-type]
        )
        for r in data
    ]
    embeddings_cache_clear()
    started = time.perf_counter()
    runs = recipes_tag_bulk(recipes=recipes, config=TaggingConfig(k=3))
    bulk_seconds = time.perf_counter() - started
    bulk_rate = len(runs) / bulk_seconds

    # 3. Single-recipe latency over real HTTP.
    user, _ = get_user_model().objects.get_or_create(username="bench")
    _, token_key = api_token_create(user=user, days=1)
    from django.core.wsgi import get_wsgi_application

    server = make_server(
        "127.0.0.1", 0, get_wsgi_application(), server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    latencies: list[float] = []
    for i in range(args.requests + 10):
        body = json.dumps(
            {
                "title": f"{ADJECTIVES[i % len(ADJECTIVES)]} tomato pasta {i}",
                "ingredients": ["200 g spaghetti", "400 g tomatoes", "2 cloves garlic", "olive oil", "basil"],
                "instructions": "Cook the pasta. Simmer the tomatoes with garlic and oil. Toss with basil.",
            }
        )
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        started = time.perf_counter()
        conn.request(
            "POST", "/api/v1/tag", body, {"Content-Type": "application/json", "Authorization": f"Token {token_key}"}
        )
        response = conn.getresponse()
        response.read()
        elapsed = (time.perf_counter() - started) * 1000
        conn.close()
        if response.status != 200:
            raise SystemExit(f"API answered {response.status} to request {i}")
        if i >= 10:  # the first requests warm up connections and caches
            latencies.append(elapsed)
    server.shutdown()
    Recipe.objects.filter(source__in=["bench", "api"], title__contains="tomato pasta").delete()

    print(f"raw encode rate:        {raw_rate:8.1f} recipes/s  ({len(texts)} recipes in {raw_seconds:.2f}s)")
    print(f"bulk tagging rate:      {bulk_rate:8.1f} recipes/s  ({len(runs)} recipes in {bulk_seconds:.2f}s)")
    print(f"bulk / raw:             {bulk_rate / raw_rate:8.2f}     (target >= 0.80)")
    print(
        f"API latency (short recipe, {len(latencies)} requests): p50 {statistics.median(latencies):.1f} ms, "
        f"p95 {percentile(latencies, 95):.1f} ms  (target p50 < 60 ms)"
    )


if __name__ == "__main__":
    main()
