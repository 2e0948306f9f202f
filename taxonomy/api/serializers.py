from __future__ import annotations

from rest_framework import serializers

from autotagger.api.fields import QueryBooleanField
from taxonomy.models import Category, Tag


class TagOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["id", "slug", "name", "description", "synonyms", "active"]


class CategoryOutputSerializer(serializers.ModelSerializer):
    tags = TagOutputSerializer(many=True, read_only=True)

    class Meta:
        model = Category
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "default_max_tags",
            "relevance_threshold",
            "active",
            "position",
            "tags",
        ]


class CategoryListQuerySerializer(serializers.Serializer):
    active = QueryBooleanField(required=False, default=False, help_text="`true`: only active categories and tags.")
