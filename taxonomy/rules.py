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


# A word's key depends on the word alone, and a catalogue's words are a vocabulary of a few thousand: each is
# worked out once per process (bounded all the same, against a stream of odd words).
@functools.lru_cache(maxsize=16384)
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
    plain = _APOSTROPHES.sub("", plain)  # goat's cheese -> goats cheese
    return [_word_key(w) for w in _WORD.findall(plain)]


_APOSTROPHES = re.compile(r"['’`]")


LINE_BREAK = "|"  # between the title and each ingredient: no phrase runs from one line into the next


@functools.lru_cache(maxsize=8192)
def _phrase(term: str) -> tuple[str, ...]:
    """The keys of a term's words; a `*` stays a wildcard."""
    return tuple(key for part in term.split() for key in ([WILDCARD] if part == WILDCARD else words(part)))


def _find(
    text: Sequence[str | None],
    present: frozenset[str],
    phrase: tuple[str, ...],
    positions: dict[str, list[int]] | None = None,
) -> list[int]:
    """Start positions of `phrase` in `text` (a `*` matches one word of the same line, never a removed one).
    `present`: the words of `text`, to rule out at once a phrase one of whose words is missing. `positions`: where
    each word stands in `text` (before any was removed), so that only the starts that put one of the phrase's
    words in its place are tried."""
    if not phrase or any(p != WILDCARD and p not in present for p in phrase):
        return []
    n = len(phrase)
    starts: Iterable[int] = range(len(text) - n + 1)
    if positions is not None:
        anchor = next((i for i, p in enumerate(phrase) if p != WILDCARD), None)
        if anchor is not None:
            last = len(text) - n
            starts = [q - anchor for q in positions.get(phrase[anchor], ()) if 0 <= q - anchor <= last]
    return [
        start
        for start in starts
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
        return RuleReader(text).group_match(self)


class RuleReader:
    """A recipe's words (its `rule_text`) read for the rules of many tags: each group and each list of required
    terms is looked for once (many tags share a group: meat rules out vegetarian, vegan, pescatarian...), and
    the set of the recipe's words is made once. Keep one per recipe; it holds what it found."""

    def __init__(self, text: Sequence[str]) -> None:
        self.text = tuple(text)
        self.present = frozenset(self.text)
        self.positions: dict[str, list[int]] = {}
        for position, word in enumerate(self.text):
            self.positions.setdefault(word, []).append(position)
        # By identity (the caller's rules live as long as the reader), each with the object it found for.
        self._groups: dict[int, tuple[IngredientMatcher, str | None]] = {}
        self._terms: dict[int, tuple[tuple[str, ...], str | None]] = {}

    def group_match(self, group: IngredientMatcher) -> str | None:
        """`group.first_match` of the recipe."""
        known = self._groups.get(id(group))
        if known is None:
            known = self._groups[id(group)] = (group, _first_match(group, self.text, self.present, self.positions))
        return known[1]

    def first_term(self, terms: tuple[str, ...]) -> str | None:
        """The first of `terms` that the recipe contains, or None."""
        known = self._terms.get(id(terms))
        if known is None:
            known = self._terms[id(terms)] = (terms, _first_term(terms, self.text, self.present, self.positions))
        return known[1]

    def broken(self, rule: TagRule) -> str | None:
        """`rule_broken` of the recipe."""
        for group in rule.excluded_by:
            term = self.group_match(group)
            if term is not None:
                return f"excluded by {group.name} ({term!r})"
        if rule.required_terms and self.first_term(rule.required_terms) is None:
            return "requires one of: " + ", ".join(rule.required_terms)
        return None

    def kept(self, rule: TagRule) -> str:
        """`rule_kept` of the recipe."""
        parts = []
        if rule.required_terms:
            found = self.first_term(rule.required_terms)
            parts.append("requires one of: " + ", ".join(rule.required_terms) + (f", found {found!r}" if found else ""))
        if rule.excluded_by:
            parts.append("none of " + ", ".join(group.name for group in rule.excluded_by) + " found")
        return "; ".join(parts) or "no rule"


def _first_match(
    group: IngredientMatcher, text: tuple[str, ...], present: frozenset[str], positions: dict[str, list[int]]
) -> str | None:
    remaining: list[str | None] = list(text)
    # In the group's order (taking one out can stop a later one from matching), only those whose words the
    # recipe has: the others cannot match.
    exceptions, removed = _terms_indexed(group.exceptions), False
    for position in exceptions.candidates(present):
        phrase = exceptions.phrases[position]
        for start in _find(remaining, present, phrase, positions):
            for i in range(start, start + len(phrase)):
                remaining[i] = None
            removed = True
    if removed:
        present = frozenset(w for w in remaining if w is not None)
    terms = _terms_indexed(group.terms)
    for position in terms.candidates(present):
        if _find(remaining, present, terms.phrases[position], positions):
            return group.terms[position]
    return None


def _first_term(
    terms: tuple[str, ...], text: tuple[str, ...], present: frozenset[str], positions: dict[str, list[int]]
) -> str | None:
    """The first of `terms` that `text` (whose words are `present`, at `positions`) contains, or None."""
    indexed = _terms_indexed(terms)
    return next(
        (terms[p] for p in indexed.candidates(present) if _find(text, present, indexed.phrases[p], positions)), None
    )


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
    ('chicken')" or "requires one of: paneer". For many rules of one recipe, use one RuleReader."""
    return RuleReader(text).broken(rule)


def rule_kept(*, text: Sequence[str], rule: TagRule) -> str:
    """Why a recipe (its `rule_text`) that does not contradict `rule` passes it: "requires one of: paneer,
    found 'paneer'; none of Meat, Fish found", or "no rule" for a rule with neither part."""
    return RuleReader(text).kept(rule)


def terms_clean(values: Iterable[str]) -> list[str]:
    """Terms as stored: trimmed, one space between words, empty ones and repeats dropped, order kept."""
    cleaned = (" ".join(v.split()) for v in values)
    return list(dict.fromkeys(v for v in cleaned if v))
