"""How the hybrid's shortlist policy trades recall for prompt size, on each shared labelled dataset, without any
model: the shortlist decides which gold tags a model could ever pick, so its recall and the prompt it makes are
known before a call is sent.

Per dataset the setup is bench/llm_quality.py's (taxonomy from the dataset's vocabulary, fold 0 of 5 held out,
the learned tagger fitted on the rest); every held-out recipe is scored once (SimilarityTagger.score_all, as the
hybrid does), then for each policy in the grid (HYBRID_MISS_SHARE x HYBRID_SHORTLIST_MAX_PER_K, x HYBRID_FLOOR
with --floors; the other HYBRID_* settings as configured) the plan is made (`hybrid_plan`) and this prints:
- the shortlist recall: the share of gold tags accepted without the model or offered to it (the best recall
  any model can reach through the hybrid; target at least 0.95);
- tags offered per recipe, and the hybrid's prompt tokens per recipe (system and user messages as
  `prompt_messages` renders them with the hybrid's prompt, brief listing, the recipe within
  HYBRID_RECIPE_MAX_TOKENS, no examples: what the oracle server counts), beside the llm strategy's prompt
  without its few-shot examples (every active tag with its description).
Then, for the configured policy, where each strategy's prompt tokens go per recipe: the system message, the tag
listing, the recipe's title and ingredients, its instructions, the rest of the user message, and the reply's JSON
schema (sent as `response_format`, not in the messages: the oracle server does not count it, a provider may).
Tokens are counted as bench/llm_quality.py counts them. The default policy's line is marked.

    nice -n 10 .venv/bin/python bench/shortlist_sweep.py [--datasets themealdb,basedcooking] [--max-recipes 400]
        [--floors 0,0.01,0.02]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.llm_quality import (
    DATASETS,
    TARGET_RECALL,
    K,
    dataset_prepare,
    datasets_each,
    say,
)

MISS_SHARES = (0.05, 0.04, 0.03, 0.02)
MAX_PER_K = (8.0, 10.0, 12.0, 16.0)


def prompt_parts(*, system: str, user: str, schema: dict[str, object], count: Callable[[str], int]) -> dict[str, int]:
    """Tokens of each part of a rendered prompt (counted apart, so they sum to about the whole)."""
    from prompts.rendering import RECIPE_CLOSE, RECIPE_OPEN

    head, fence, rest = user.partition(RECIPE_OPEN)
    body, close, tail = rest.partition(RECIPE_CLOSE)
    listing, marker, examples = head.partition("Examples of recipes tagged by people")
    described, heading, instructions = body.partition("\nInstructions:")
    return {
        "system": count(system),
        "tag listing": count(listing),
        "examples": count(marker + examples),
        "recipe title and ingredients": count(fence + described),
        "recipe instructions": count(heading + instructions),
        "rest of the user message": count(close + tail),
        "schema (response_format)": count(json.dumps(schema)),
    }


def dataset_sweep(
    *,
    path: Path,
    max_recipes: int,
    count_tokens: Callable[[str], int],
    floors: tuple[float, ...] = (0.0,),
    per_category: bool = False,
    miss_shares: tuple[float, ...] = MISS_SHARES,
    caps: tuple[float, ...] = MAX_PER_K,
) -> None:
    from django.conf import settings

    from autotagger.embeddings import embedding_model_name, embeddings_create
    from prompts.rendering import prompt_messages, reply_schema
    from tagging.selectors import tagging_prompt_active
    from tagging.services.config import TaggingConfig, category_requests
    from tagging.services.tagger_state import learned_model_active
    from tagging.taggers.hybrid import ShortlistPolicy, hybrid_plan
    from tagging.taggers.llm import active_tags_of, category_choices
    from tagging.taggers.similarity import SimilarityTagger
    from taxonomy.models import Tag

    prepared = dataset_prepare(path=path, max_recipes=max_recipes)
    recipes = prepared.held_out
    vectors = embeddings_create(texts=[r.text.for_embedding() for r in recipes]).vectors
    learned = learned_model_active()
    tagger = SimilarityTagger(model=embedding_model_name(), learned=learned)
    # The hybrid asks the categories the similarity strategy does (no source is needed to plan).
    requests = category_requests(config=TaggingConfig(strategy="similarity", k=K))
    scored = [
        tagger.score_all(recipe=r.text, embedding=v, requests=requests) for r, v in zip(recipes, vectors, strict=True)
    ]
    tags = {tag.pk: tag for tag in Tag.objects.all()}
    every_tag = active_tags_of(requests)
    prompts = {strategy: tagging_prompt_active(strategy=strategy) for strategy in ("llm", "hybrid")}
    recipe_max_tokens = int(settings.HYBRID_RECIPE_MAX_TOKENS) or None

    def parts(
        recipe: object, offered: dict[int, list[Tag]], *, hybrid: bool, slots: dict[int, int] | None
    ) -> dict[str, int]:
        choices = category_choices([r for r in requests if offered.get(r.category.pk)], offered, slots)
        system, user = prompt_messages(
            recipe=recipe,  # type: ignore[arg-type]
            categories=choices,
            brief_tags=hybrid and bool(settings.HYBRID_BRIEF_TAGS),
            recipe_max_tokens=recipe_max_tokens if hybrid else None,
            templates=prompts["hybrid" if hybrid else "llm"],
        )
        counted = prompt_parts(system=system, user=user, schema=reply_schema(categories=choices), count=count_tokens)
        counted["messages"] = int(count_tokens(system) + count_tokens(user))
        return counted

    def mean_parts(rows: list[dict[str, int]]) -> str:
        names = [name for name in rows[0] if name != "messages"]
        return ", ".join(f"{name} {sum(r[name] for r in rows) / len(recipes):.0f}" for name in names) + (
            f"; messages {sum(r['messages'] for r in rows) / len(recipes):.0f}"
        )

    llm_parts = [parts(r.text, every_tag, hybrid=False, slots=None) for r in recipes]
    llm_tokens = sum(p["messages"] for p in llm_parts) / len(recipes)
    default = ShortlistPolicy.from_settings()
    say(f"  llm prompt without its examples: {llm_tokens:.0f} tokens per recipe")
    say(
        f"  hybrid prompt {prompts['hybrid'].label}, recipe within "
        f"{recipe_max_tokens or 'no'} tokens (HYBRID_RECIPE_MAX_TOKENS), brief listing {settings.HYBRID_BRIEF_TAGS}"
    )
    hybrid_parts: list[dict[str, int]] = []
    for miss_share, max_per_k, floor in itertools.product(miss_shares, caps, floors):
        policy = replace(default, miss_share=miss_share, max_per_k=max_per_k, floor=floor)
        configured = (miss_share, max_per_k, floor) == (default.miss_share, default.max_per_k, default.floor)
        reached = gold_total = offered_total = prompt_total = 0
        # category slug -> [gold reached, gold, tags offered]
        by_category: dict[str, list[int]] = {r.category.slug: [0, 0, 0] for r in requests}
        for recipe, output in zip(recipes, scored, strict=True):
            plan = hybrid_plan(scored=output, requests=requests, policy=policy)
            for request in requests:
                gold = recipe.labels.get(request.category.slug, set())
                reach = {t.slug for t in plan.accepted.get(request.category.pk, [])}
                reach |= {t.slug for t in plan.shortlist.get(request.category.pk, [])}
                reached += len(gold & reach)
                gold_total += len(gold)
                counts = by_category[request.category.slug]
                counts[0] += len(gold & reach)
                counts[1] += len(gold)
                counts[2] += len(plan.shortlist.get(request.category.pk, []))
            offered = {pk: [tags[t.tag_id] for t in shortlist] for pk, shortlist in plan.shortlist.items()}
            offered_total += sum(len(v) for v in offered.values())
            if offered:
                counted = parts(recipe.text, offered, hybrid=True, slots=plan.slots)
                prompt_total += counted["messages"]
                if configured:
                    hybrid_parts.append(counted)
        recall = reached / gold_total if gold_total else float("nan")
        mark = "  <- the configured policy" if configured else ""
        say(
            f"  miss share {miss_share:.3f}, "
            f"at most {max_per_k:>4.0f} per slot, floor {floor:.3f}: "
            f"shortlist recall {recall:.3f} "
            f"({reached}/{gold_total}, target {TARGET_RECALL}: {'met' if recall >= TARGET_RECALL else 'not met'}); "
            f"{offered_total / len(recipes):.1f} tags offered, {prompt_total / len(recipes):.0f} prompt tokens per "
            f"recipe ({prompt_total / len(recipes) / llm_tokens:.2f} of llm's without examples){mark}"
        )
        if per_category:
            say(
                "    per category (gold reached/gold, tags offered per recipe): "
                + ", ".join(
                    f"{slug} {got}/{gold} {offered / len(recipes):.1f}"
                    + ("" if learned is not None and slug in learned.categories else " (zero-shot)")
                    for slug, (got, gold, offered) in by_category.items()
                )
            )
    say(f"  tokens per recipe by part, llm (no examples): {mean_parts(llm_parts)}")
    if hybrid_parts:
        say(f"  tokens per recipe by part, hybrid (configured policy): {mean_parts(hybrid_parts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS[:2]), help="comma-separated dataset names")
    parser.add_argument("--max-recipes", type=int, default=400, help="held-out recipes per dataset at most")
    parser.add_argument(
        "--floors", default="0", help="comma-separated HYBRID_FLOOR values to sweep as well (default: 0 only)"
    )
    parser.add_argument(
        "--miss-shares", default=",".join(map(str, MISS_SHARES)), help="comma-separated HYBRID_MISS_SHARE values"
    )
    parser.add_argument(
        "--caps", default=",".join(map(str, MAX_PER_K)), help="comma-separated HYBRID_SHORTLIST_MAX_PER_K values"
    )
    parser.add_argument("--per-category", action="store_true", help="also print each policy's recall per category")
    args = parser.parse_args()
    floors = tuple(float(f) for f in args.floors.split(",") if f.strip())
    datasets_each(
        datasets=args.datasets,
        run=lambda path, count: dataset_sweep(
            path=path,
            max_recipes=args.max_recipes,
            count_tokens=count,
            floors=floors,
            per_category=args.per_category,
            miss_shares=tuple(float(v) for v in args.miss_shares.split(",") if v.strip()),
            caps=tuple(float(v) for v in args.caps.split(",") if v.strip()),
        ),
    )


if __name__ == "__main__":
    main()
