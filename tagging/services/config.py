"""What a tagging request asks for (TaggingConfig), and whether it can be served: the categories it covers,
its k and threshold, the LLM source of the strategies that need one."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from autotagger.embeddings import EmbeddingMode, fast_model_available, fast_model_path
from autotagger.errors import DomainError
from prompts.sources import LLMNotConfigured, LLMSourceConfig, llm_source_get
from tagging.models import Strategy
from tagging.taggers.base import CategoryRequest
from taxonomy.limits import MAX_TAGS_PER_CATEGORY
from taxonomy.models import Category
from taxonomy.selectors import categories_by_slugs

logger = logging.getLogger(__name__)


class TaggingError(DomainError):
    """A tagging request that cannot be served."""

    code = "tagging_error"


class LLMNotConfiguredError(TaggingError):
    code = "llm_not_configured"


class UnknownCategories(TaggingError):
    code = "unknown_category"


class InvalidTaggingConfig(TaggingError):
    code = "invalid_config"


class FastModeUnavailable(TaggingError):
    """Fast mode asked for on a machine where the static model has not been distilled."""

    code = "fast_mode_unavailable"


@dataclass(frozen=True)
class TaggingConfig:
    strategy: str = Strategy.SIMILARITY
    k: int | None = None
    categories: tuple[str, ...] | None = None
    threshold: float | None = None
    source: str | None = None  # the LLM source for llm and hybrid; None: LLM_DEFAULT_SOURCE
    embedding: str = EmbeddingMode.FULL  # "fast": the distilled static model (similarity only)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["categories"] = list(self.categories) if self.categories is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaggingConfig:
        categories = data.get("categories")
        return cls(
            strategy=data.get("strategy", Strategy.SIMILARITY),
            k=data.get("k"),
            categories=tuple(categories) if categories is not None else None,
            threshold=data.get("threshold"),
            source=data.get("source"),
            embedding=data.get("embedding") or EmbeddingMode.FULL,
        )

    @property
    def uses_llm(self) -> bool:
        return self.strategy in (Strategy.LLM, Strategy.HYBRID)


def category_requests(*, config: TaggingConfig) -> list[CategoryRequest]:
    if config.strategy not in Strategy.values:
        raise InvalidTaggingConfig(
            f"Unknown strategy {config.strategy!r}.", details={"strategy": [f"Choose one of {Strategy.values}."]}
        )
    embedding_mode_validate(config=config)
    if config.uses_llm:
        llm_source_resolve(config=config)
    if config.k is not None and not 1 <= config.k <= MAX_TAGS_PER_CATEGORY:
        raise InvalidTaggingConfig(f"k must be between 1 and {MAX_TAGS_PER_CATEGORY}.", details={"k": config.k})
    if config.threshold is not None and not 0 <= config.threshold <= 1:
        raise InvalidTaggingConfig("threshold must be between 0 and 1.", details={"threshold": config.threshold})
    if config.categories is None:
        categories = list(Category.objects.filter(active=True).order_by("position", "name", "id"))
    else:
        categories, unknown = categories_by_slugs(slugs=config.categories)
        if unknown:
            raise UnknownCategories(
                f"Unknown or inactive categories: {', '.join(unknown)}.", details={"categories": unknown}
            )
    if not categories:
        raise InvalidTaggingConfig("There are no active categories to tag with; load or create a taxonomy first.")
    return [
        CategoryRequest(
            category=category,
            k=config.k or category.default_max_tags,
            threshold=_threshold(config, category),
            override=config.threshold,
        )
        for category in categories
    ]


def embedding_mode_validate(*, config: TaggingConfig) -> None:
    if config.embedding not in EmbeddingMode.values:
        raise InvalidTaggingConfig(
            f"Unknown embedding {config.embedding!r}.",
            details={"embedding": [f"Choose one of {EmbeddingMode.values}."]},
        )
    if config.embedding != EmbeddingMode.FAST:
        return
    if config.strategy != Strategy.SIMILARITY:
        # The LLM strategies read the recipe itself; the embedding only matters to the similarity tagger.
        raise InvalidTaggingConfig(
            "embedding 'fast' applies to the similarity strategy only.",
            details={"embedding": config.embedding, "strategy": config.strategy},
        )
    if not fast_model_available():
        raise FastModeUnavailable(
            f"Fast mode is not available: its model has not been distilled into {fast_model_path()}. "
            "Run `python manage.py embedding_distill` (or `make run FAST_MODE=1`) and try again.",
            details={"embedding": config.embedding},
        )


def _threshold(config: TaggingConfig, category: Category) -> float:
    if config.threshold is not None:
        return config.threshold
    if category.relevance_threshold is not None:
        return category.relevance_threshold
    return float(settings.TAGGING_DEFAULT_THRESHOLD)


def llm_source_resolve(*, config: TaggingConfig) -> LLMSourceConfig:
    try:
        return llm_source_get(name=config.source)
    except LLMNotConfigured as exc:
        raise LLMNotConfiguredError(
            f"The {config.strategy!r} strategy needs a language model: {exc.message}",
            details={"strategy": config.strategy, **exc.details},
        ) from exc


def tagging_config_validate(*, config: TaggingConfig) -> None:
    """Raise TaggingError if `config` cannot be served (before anything is stored or queued)."""
    category_requests(config=config)


def config_stored(*, config: TaggingConfig, requests: Sequence[CategoryRequest]) -> dict[str, Any]:
    # The categories actually tagged, so a run shows a category that got nothing as such.
    return {**config.as_dict(), "category_slugs": [r.category.slug for r in requests]}


def user_or_none(*, user: AbstractBaseUser | AnonymousUser | None) -> Any:
    return user if user is not None and user.is_authenticated else None
