"""Why a recipe's current tags may be out of date: the causes tagging.selectors.recipes_stale tells apart."""

from __future__ import annotations

NEVER_TAGGED = "never_tagged"  # no current run
CONTENT = "content"  # the recipe was edited since its current run read it
TAXONOMY = "taxonomy"  # the taxonomy has a newer version than the run read
PROMPT = "prompt"  # llm/hybrid: another tagging prompt version is active
MODEL = "model"  # llm/hybrid: the source now names another model; similarity/hybrid: another embedding model
TAGGER = "tagger"  # similarity/hybrid: the taggers now use another learned state

STALE_CAUSES: tuple[str, ...] = (NEVER_TAGGED, CONTENT, TAXONOMY, PROMPT, MODEL, TAGGER)

STALE_CAUSE_LABELS: dict[str, str] = {
    NEVER_TAGGED: "Never tagged",
    CONTENT: "Recipe edited",
    TAXONOMY: "Taxonomy changed",
    PROMPT: "Prompt changed",
    MODEL: "Model changed",
    TAGGER: "Tagger retrained",
}
