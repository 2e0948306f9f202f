"""Prompt tokens per recipe of the `llm` strategy versus `hybrid`, on the default taxonomy and the
demo recipes. Target: hybrid sends at most 35% of the tokens of llm.

No model is called: the prompts are built exactly as the taggers build them and counted. The
tokenizer is tiktoken's o200k_base when it can be loaded (it downloads its vocabulary, so offline it
usually cannot), otherwise the embedding model's own tokenizer; the output says which. Ratios
between the two strategies hardly depend on the tokenizer.

Uses its own database (`autotagger_bench` on the embedded server) unless DATABASE_URL is set.

    .venv/bin/python bench/llm_tokens.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autotagger.settings.development")
os.environ.setdefault("AUTOTAGGER_EMBEDDED_DATABASE", "autotagger_bench")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()


def tokenizer() -> tuple[str, Callable[[str], int]]:
    try:
        import tiktoken

        encoding = tiktoken.get_encoding("o200k_base")
        return "tiktoken o200k_base", lambda text: len(encoding.encode(text))
    except Exception:  # offline: the vocabulary cannot be fetched
        from autotagger.embeddings import _get_backend

        model = _get_backend()._model  # type: ignore[attr-defined]
        return (
            "the embedding model's tokenizer (all-MiniLM-L6-v2 WordPiece): "
            "tiktoken o200k_base could not be loaded offline",
            lambda text: len(model.tokenizer(text, add_special_tokens=False)["input_ids"]),
        )


def main() -> None:
    import numpy as np
    from django.conf import settings
    from django.core.management import call_command

    from autotagger.embeddings import embedding_create
    from autotagger.recipe_text import RecipeText
    from prompts.rendering import prompt_messages
    from tagging.selectors import tagging_prompt_active
    from tagging.services.config import TaggingConfig, category_requests
    from tagging.services.tagger_state import learned_model_active
    from tagging.taggers.hybrid import hybrid_plan
    from tagging.taggers.llm import category_choices
    from tagging.taggers.similarity import SimilarityTagger
    from taxonomy.models import Tag

    call_command("migrate", verbosity=0)
    call_command("taxonomy_import", "--default", "--if-empty", "--embed-now", verbosity=0)
    name, count = tokenizer()
    demo = json.loads((ROOT / "tagging" / "data" / "demo_recipes.json").read_text())
    requests = category_requests(config=TaggingConfig(strategy="similarity"))
    all_tags = {
        r.category.pk: list(Tag.objects.filter(category=r.category, active=True).order_by("name")) for r in requests
    }
    similarity = SimilarityTagger(model=settings.EMBEDDING_MODEL, learned=learned_model_active())

    llm_tokens, hybrid_tokens, calls = [], [], 0
    for item in demo:
        recipe = RecipeText(title=item["title"], ingredients=item["ingredients"], instructions=item["instructions"])
        system, user = prompt_messages(
            recipe=recipe,
            categories=category_choices(requests, all_tags),
            templates=tagging_prompt_active(strategy="llm"),
        )
        llm_tokens.append(count(system) + count(user))

        scored = similarity.score_all(
            recipe=recipe, embedding=embedding_create(text=recipe.for_embedding()), requests=requests
        )
        plan = hybrid_plan(scored=scored, requests=requests)
        shortlist = {pk: [Tag.objects.get(pk=t.tag_id) for t in tags] for pk, tags in plan.shortlist.items()}
        asked = [r for r in requests if r.category.pk in shortlist]
        if asked:
            calls += 1
            system, user = prompt_messages(
                recipe=recipe,
                categories=category_choices(asked, shortlist, plan.slots),
                brief_tags=bool(settings.HYBRID_BRIEF_TAGS),
                recipe_max_tokens=int(settings.HYBRID_RECIPE_MAX_TOKENS) or None,
                templates=tagging_prompt_active(strategy="hybrid"),
            )
            hybrid_tokens.append(count(system) + count(user))
        else:
            hybrid_tokens.append(0)

    print(f"tokenizer: {name}")
    print(f"recipes: {len(demo)}; categories: {len(requests)}; active tags: {sum(len(t) for t in all_tags.values())}")
    print(f"llm prompt tokens per recipe:    mean {statistics.mean(llm_tokens):7.0f}  (max {max(llm_tokens)})")
    print(f"hybrid prompt tokens per recipe: mean {statistics.mean(hybrid_tokens):7.0f}  (max {max(hybrid_tokens)})")
    print(f"recipes for which hybrid called the LLM at all: {calls} of {len(demo)}")
    ratio = float(np.sum(hybrid_tokens)) / float(np.sum(llm_tokens))
    print(f"hybrid / llm: {ratio:.2f}  (target <= 0.35)")


if __name__ == "__main__":
    main()
