"""Ingredient rules, pure: which words of a recipe's title and ingredient list a tag's rules forbid or need.

A rule never reads the instructions: "serve with naan" is a suggestion, not an ingredient. Text and terms
are compared as words after the same normalisation (case, accents, hyphens and apostrophes, quantities
and units are just other words, plurals and common forms reduced to one key), so "2 Tomatoes",
"tomato" and "TOMATOES" match, "egg" never matches "eggplant" and "Jalapeños" matches "jalapeno".
Exception phrases of a group are taken out of the text before its terms are looked for: "peanut butter"
is not dairy, "gluten-free flour" is not gluten. In an exception, `*` stands for any one word
("vegan *" excepts "vegan bacon" and "vegan cheese").
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from autotagger.recipe_text import RecipeText

_WORD = re.compile(r"[a-z]+|[0-9]+")
WILDCARD = "*"


def _word_key(word: str) -> str:
    """One key for a word's singular, plural and common spellings (a light stemmer: the recipe and the terms
    both go through it, so what matters is that the forms of one word meet, not that the key is a word)."""
    if not word.isalpha():
        return word
    if len(word) > 3:
        if word.endswith("ies") and len(word) > 4:  # berries, chillies, anchovies, cookies
            word = word[:-3] + "y"
        elif word.endswith(("oes", "ches", "shes", "sses", "xes", "zes")):  # tomatoes, peaches, radishes
            word = word[:-2]
        elif word.endswith("s") and not word.endswith(("ss", "us", "is")):  # eggs, prawns (not bass, couscous)
            word = word[:-1]
    if len(word) >= 3 and word.endswith("ie"):  # cookie, pie: as cookies, pies
        return word[:-2] + "y"
    if len(word) >= 3 and word.endswith("i"):  # chilli: as chillies, chilly
        return word[:-1] + "y"
    return word


def words(text: str) -> list[str]:
    """The keys of the words of `text`: lower case, accents and apostrophes dropped, digits apart from letters
    ("200g" is "200" and "g")."""
    if text.isascii():
        plain = text.lower()  # nothing to decompose: most lines
    else:
        decomposed = unicodedata.normalize("NFKD", text)
        plain = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    plain = re.sub(r"['’`]", "", plain)  # goat's cheese -> goats cheese
    return [_word_key(w) for w in _WORD.findall(plain)]


LINE_BREAK = "|"  # between the title and each ingredient: no phrase runs from one line into the next


@functools.lru_cache(maxsize=8192)
def _phrase(term: str) -> tuple[str, ...]:
    """The keys of a term's words; a `*` stays a wildcard."""
    return tuple(key for part in term.split() for key in ([WILDCARD] if part == WILDCARD else words(part)))


def _find(text: Sequence[str | None], present: frozenset[str], phrase: tuple[str, ...]) -> list[int]:
    """Start positions of `phrase` in `text` (a `*` matches one word of the same line, never a removed one).
    `present`: the words of `text`, to rule out at once a phrase one of whose words is missing."""
    if not phrase or any(p != WILDCARD and p not in present for p in phrase):
        return []
    n = len(phrase)
    return [
        start
        for start in range(len(text) - n + 1)
        if all(
            (word := text[start + i]) is not None and (word == p or (p == WILDCARD and word != LINE_BREAK))
            for i, p in enumerate(phrase)
        )
    ]


@dataclass(frozen=True)
class IngredientMatcher:
    """A group of ingredients (what "meat" or "dairy" means) ready to look for in a recipe."""

    slug: str
    name: str
    terms: tuple[str, ...]
    exceptions: tuple[str, ...] = ()

    def first_match(self, text: Sequence[str]) -> str | None:
        """The first of the group's terms that `text` (the words of a recipe) contains once its exceptions are
        taken out, or None."""
        return _first_match(self, tuple(text))


# Many tags share a group (meat rules out vegetarian, vegan, pescatarian...): a recipe is searched for each
# group once. A recipe's tags are checked one after another, so a few recipes' worth of entries is enough: a
# larger cache only keeps recipes seen once (each entry holds a recipe's words), and grows a bulk pass.
@functools.lru_cache(maxsize=64)
def _first_match(group: IngredientMatcher, text: tuple[str, ...]) -> str | None:
    present = frozenset(text)
    remaining: list[str | None] = list(text)
    for exception in group.exceptions:
        phrase = _phrase(exception)
        for start in _find(remaining, present, phrase):
            for i in range(start, start + len(phrase)):
                remaining[i] = None
    present = frozenset(w for w in remaining if w is not None)
    terms = _terms_indexed(group.terms)
    for position in terms.candidates(present):
        if _find(remaining, present, terms.phrases[position]):
            return group.terms[position]
    return None


# A tag's required terms are looked for twice (is the rule broken, and which term kept it): once is enough.
@functools.lru_cache(maxsize=256)
def _first_term(terms: tuple[str, ...], text: tuple[str, ...]) -> str | None:
    """The first of `terms` that `text` contains, or None."""
    present = frozenset(text)
    indexed = _terms_indexed(terms)
    return next((terms[p] for p in indexed.candidates(present) if _find(text, present, indexed.phrases[p])), None)


@dataclass(frozen=True)
class _IndexedTerms:
    """A group's terms filed under each of their words: a term can only be found in a text that has all its
    words, so a recipe is searched for the few terms that share a word with it, not for each of the group's."""

    phrases: tuple[tuple[str, ...], ...]
    by_word: dict[str, tuple[int, ...]]
    words: frozenset[str]
    wildcards_only: tuple[int, ...]  # terms of nothing but wildcards: any text may have them

    def candidates(self, present: frozenset[str]) -> list[int]:
        """Positions of the terms whose words all occur in `present`, in the group's order."""
        found = set(self.wildcards_only)
        for word in self.words & present:
            found.update(self.by_word[word])
        return sorted(p for p in found if all(w == WILDCARD or w in present for w in self.phrases[p]))


@functools.lru_cache(maxsize=256)
def _terms_indexed(terms: tuple[str, ...]) -> _IndexedTerms:
    phrases = tuple(_phrase(term) for term in terms)
    by_word: dict[str, set[int]] = {}
    wildcards_only = []
    for position, phrase in enumerate(phrases):
        words = [w for w in phrase if w != WILDCARD]
        if not phrase:
            continue  # no words at all: never found
        if not words:
            wildcards_only.append(position)
        for word in words:
            by_word.setdefault(word, set()).add(position)
    return _IndexedTerms(
        phrases=phrases,
        by_word={word: tuple(sorted(positions)) for word, positions in by_word.items()},
        words=frozenset(by_word),
        wildcards_only=tuple(wildcards_only),
    )


@dataclass(frozen=True)
class TagRule:
    """What a tag needs of a recipe: none of the `excluded_by` groups, and (if any) one of `required_terms`."""

    excluded_by: tuple[IngredientMatcher, ...] = ()
    required_terms: tuple[str, ...] = ()


def rule_text(recipe: RecipeText) -> list[str]:
    """The words rules look at: the title and the ingredient list, line by line."""
    text: list[str] = []
    for line in [recipe.title, *recipe.ingredients]:
        text.extend(words(line))
        text.append(LINE_BREAK)
    return text


def rule_broken(*, text: Sequence[str], rule: TagRule) -> str | None:
    """Why a recipe (its `rule_text`) contradicts `rule`, or None when it does not: "excluded by Meat
    ('chicken')" or "requires one of: paneer"."""
    for group in rule.excluded_by:
        term = group.first_match(text)
        if term is not None:
            return f"excluded by {group.name} ({term!r})"
    if rule.required_terms and _first_term(rule.required_terms, tuple(text)) is None:
        return "requires one of: " + ", ".join(rule.required_terms)
    return None


def rule_kept(*, text: Sequence[str], rule: TagRule) -> str:
    """Why a recipe (its `rule_text`) that does not contradict `rule` passes it: "requires one of: paneer,
    found 'paneer'; none of Meat, Fish found", or "no rule" for a rule with neither part."""
    parts = []
    if rule.required_terms:
        found = _first_term(rule.required_terms, tuple(text))
        parts.append("requires one of: " + ", ".join(rule.required_terms) + (f", found {found!r}" if found else ""))
    if rule.excluded_by:
        parts.append("none of " + ", ".join(group.name for group in rule.excluded_by) + " found")
    return "; ".join(parts) or "no rule"


def terms_clean(values: Iterable[str]) -> list[str]:
    """Terms as stored: trimmed, one space between words, empty ones and repeats dropped, order kept."""
    cleaned = (" ".join(v.split()) for v in values)
    return list(dict.fromkeys(v for v in cleaned if v))
