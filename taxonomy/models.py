from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from pgvector.django import VectorField

from taxonomy.limits import DEFAULT_TAGS_PER_CATEGORY, MAX_TAGS_PER_CATEGORY


class Category(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    default_max_tags = models.PositiveSmallIntegerField(
        default=DEFAULT_TAGS_PER_CATEGORY,
        help_text="How many tags this category returns when a request does not set k.",
    )
    relevance_threshold = models.FloatField(
        null=True,
        blank=True,
        help_text="Score (0–1) a tag needs to be returned; empty uses the calibrated default.",
    )
    precision_floor = models.FloatField(
        null=True,
        blank=True,
        help_text="Lowest precision (0–1) the learned threshold of this category may have on held-out "
        "labels; empty means no floor (the threshold maximises F1).",
    )
    active = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "categories"
        constraints = [
            models.CheckConstraint(
                condition=Q(default_max_tags__gte=1) & Q(default_max_tags__lte=MAX_TAGS_PER_CATEGORY),
                name="taxonomy_category_default_max_tags_range",
            ),
            models.CheckConstraint(
                condition=Q(relevance_threshold__isnull=True)
                | (Q(relevance_threshold__gte=0) & Q(relevance_threshold__lte=1)),
                name="taxonomy_category_threshold_range",
            ),
            models.CheckConstraint(
                condition=Q(precision_floor__isnull=True) | (Q(precision_floor__gte=0) & Q(precision_floor__lte=1)),
                name="taxonomy_category_precision_floor_range",
            ),
            models.CheckConstraint(condition=~Q(slug=""), name="taxonomy_category_slug_not_empty"),
            models.CheckConstraint(condition=~Q(name=""), name="taxonomy_category_name_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name


class IngredientGroup(models.Model):
    """A kind of ingredient that tag rules refer to ("meat", "dairy"): the words that name it, and the phrases
    that look like it but are not ("vegan bacon", "peanut butter"). Matching is on whole words, in any case,
    accents and plural (taxonomy.rules)."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    terms = ArrayField(
        models.CharField(max_length=100),
        default=list,
        help_text="Words or phrases that name this kind of ingredient (singular is enough: 'egg' finds 'eggs').",
    )
    exceptions = ArrayField(
        models.CharField(max_length=100),
        default=list,
        blank=True,
        help_text="Phrases taken out of a recipe before the terms are looked for ('peanut butter' is not "
        "dairy); '*' stands for any one word ('vegan *').",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(slug=""), name="taxonomy_ingredient_group_slug_not_empty"),
            models.CheckConstraint(condition=~Q(name=""), name="taxonomy_ingredient_group_name_not_empty"),
            models.CheckConstraint(condition=~Q(terms=[]), name="taxonomy_ingredient_group_has_terms"),
        ]

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100)
    description = models.TextField(blank=True)
    synonyms = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    active = models.BooleanField(default=True)
    # Ingredient rules: a tag is never given to a recipe whose title or ingredients break them.
    excluded_by = models.ManyToManyField(
        IngredientGroup,
        blank=True,
        related_name="excluded_tags",
        help_text="Never give this tag to a recipe that names one of these ingredients (vegetarian: meat, fish).",
    )
    required_terms = ArrayField(
        models.CharField(max_length=100),
        default=list,
        blank=True,
        help_text="Give this tag only to a recipe whose title or ingredients name one of these "
        "(main ingredient paneer: 'paneer'); empty: no requirement.",
    )
    embedding = VectorField(dimensions=settings.EMBEDDING_DIMENSIONS, null=True, blank=True, editable=False)
    embedding_model = models.CharField(max_length=200, blank=True, editable=False)
    embedded_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["category", "slug"], name="taxonomy_tag_unique_slug_per_category"),
            models.CheckConstraint(condition=~Q(slug=""), name="taxonomy_tag_slug_not_empty"),
            models.CheckConstraint(condition=~Q(name=""), name="taxonomy_tag_name_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.category.slug}/{self.slug}"

    @property
    def embedding_text(self) -> str:
        """What is embedded for this tag: the text a recipe of this tag tends to resemble."""
        parts = [f"{self.name}: {self.description}".strip().rstrip(":")]
        if self.synonyms:
            parts.append("Also: " + ", ".join(self.synonyms) + ".")
        return " ".join(parts)


class TagEmbedding(models.Model):
    """A tag's vector from a second embedding model (the fast mode's static model): Tag.embedding holds the
    full model's, so switching mode never overwrites it."""

    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="embeddings")
    model = models.CharField(max_length=200)
    embedding = VectorField(dimensions=settings.EMBEDDING_DIMENSIONS)
    embedded_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tag", "model"], name="taxonomy_tag_embedding_one_per_model"),
            models.CheckConstraint(condition=~Q(model=""), name="taxonomy_tag_embedding_model_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.tag_id} ({self.model})"


class TaxonomyVersion(models.Model):
    """A state of the taxonomy as tagging sees it: recorded whenever what decides a tag changes (active
    categories, tags, descriptions, synonyms, ingredient rules), so that a run can say which taxonomy it read
    and a recipe tagged before a change is known to be stale (taxonomy.services.versions)."""

    number = models.PositiveIntegerField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # [{"kind": "tag", "action": "changed", "object": "cuisine/thai", "fields": ["synonyms"]}, ...]
    changes = models.JSONField(default=list, blank=True)
    # What the next change is compared with: see taxonomy.services.versions.taxonomy_snapshot.
    snapshot = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(number__gte=1), name="taxonomy_version_number_positive"),
        ]

    def __str__(self) -> str:
        return f"Taxonomy version {self.number}"
