"""Tags that contradict a recipe's own ingredients, and recall of the obvious tags, per strategy, on the
everyday recipes (tagging/tests/data/everyday_recipes.json: 68 recipes with their obvious cuisine, main
ingredient and dish type). Target: 0 contradictions stored, at least 90% of the obvious tags found.

- similarity: the tagger as deployed (default k per category, every active category).
- llm and hybrid: a careless model (a local OpenAI-compatible server, no network) that answers with the
  recipe's obvious tags it was offered plus diets, main ingredients and occasions that often contradict a
  recipe (vegetarian, paneer, passover...). Its recall measures what the rules left of a right answer.

"removed by rule" counts what the rules took out of the strategy's answers: the contradictions there would
have been without them.

Uses its own database (`autotagger_bench_contradictions`, or `autotagger_bench_starter` with --starter, on the
embedded server) unless DATABASE_URL is set.

    .venv/bin/python bench/contradictions.py [--verbose] [--starter]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autotagger.settings.development")
# A database of its own for each mode: one where the starter set was learned is not zero-shot any more.
os.environ.setdefault(
    "AUTOTAGGER_EMBEDDED_DATABASE",
    "autotagger_bench_starter" if "--starter" in sys.argv else "autotagger_bench_contradictions",
)
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["DJANGO_DEBUG"] = "false"

import django  # noqa: E402

django.setup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", action="store_true", help="list the contradictions and the missed tags")
    parser.add_argument(
        "--starter",
        action="store_true",
        help="first load the labelled starter set and fit the learned tagger on it, as `make run` deploys it "
        "(only into a database of this benchmark that holds nothing else)",
    )
    args = parser.parse_args()

    from django.conf import settings
    from django.core.management import call_command

    from prompts.tests.openai_server import OpenAIServer
    from tagging.models import Recipe, TaggingRun
    from tagging.services.config import TaggingConfig
    from tagging.services.recipes import recipe_create
    from tagging.services.runs import recipes_tag_bulk, run_create, run_execute
    from tagging.tests.everyday import Measured, careless_model, everyday_recipes, runs_measure

    call_command("migrate", verbosity=0)
    # Not --if-empty: a database loaded before the ingredient rules existed gets them (matched by slug).
    call_command("taxonomy_import", "--default", "--embed-now", verbosity=0)
    TaggingRun.objects.filter(recipe__source="bench-everyday").delete()
    Recipe.objects.filter(source="bench-everyday").delete()
    if args.starter:
        call_command("load_starter_set")

    data = everyday_recipes()
    recipes = [
        recipe_create(
            title=r["title"], ingredients=r["ingredients"], instructions=r["instructions"], source="bench-everyday"
        )
        for r in data
    ]
    results: dict[str, Measured] = {}
    results["similarity"] = runs_measure(runs=recipes_tag_bulk(recipes=recipes, config=TaggingConfig()), recipes=data)

    server = OpenAIServer().start()
    settings.LLM_BASE_URL, settings.LLM_MODEL, settings.LLM_API_KEY = server.url, "careless-model", "bench"
    settings.LLM_DEFAULT_SOURCE, settings.LLM_SUPPORTS_JSON_SCHEMA = "default", True
    try:
        for strategy in ("llm", "hybrid"):
            server.reply_computed(careless_model(data), times=len(recipes))
            runs = []
            for recipe in recipes:
                run = run_create(recipe=recipe, config=TaggingConfig(strategy=strategy))
                run_execute(run_id=run.pk)
                runs.append(TaggingRun.objects.select_related("recipe").get(pk=run.pk))
            results[f"{strategy} (careless model)"] = runs_measure(runs=runs, recipes=data)
            server.requests.clear()
            while server.pending:  # hybrid asks nothing for a recipe similarity was sure of
                server._next_reply()
    finally:
        server.stop()

    print(f"{len(data)} everyday recipes, {results['similarity'].obvious} obvious tags")
    print(f"{'strategy':<26}{'tags':>6}{'contradictions':>16}{'removed by rule':>17}{'obvious found':>15}")
    for name, m in results.items():
        print(
            f"{name:<26}{m.tags:>6}{len(m.contradictions):>16}{m.removed_by_rule:>17}"
            f"{m.obvious_found:>8}/{m.obvious} {m.recall:.0%}"
        )
        if args.verbose:
            for line in m.contradictions:
                print("   contradiction:", line)
            for line in m.missed:
                print("   missed:", line)


if __name__ == "__main__":
    main()
