from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from autotagger.embeddings import EmbeddingMode
from retagging.models import JobStatus, RetagJob, SelectionKind
from tagging.models import Strategy


class RetagSelectionSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=SelectionKind.choices)
    value = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="category: its slug; tag: category/slug; source: a recipe source; changed_since: an ISO date.",
    )
    causes = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="For kind stale: only these causes (never_tagged, content, taxonomy, prompt, model, tagger).",
    )


class RetagConfigSerializer(serializers.Serializer):
    k = serializers.IntegerField(required=False, help_text="Tags per category at most.")
    categories = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Only these categories (slugs); others carried over."
    )
    threshold = serializers.FloatField(required=False)
    source = serializers.CharField(required=False, help_text="The LLM source (llm and hybrid).")  # type: ignore[assignment]
    embedding = serializers.ChoiceField(
        choices=EmbeddingMode.choices,
        required=False,
        help_text="similarity: `fast` embeds with the distilled static model (`full`, the default: the full model).",
    )


class RetagJobCreateSerializer(serializers.Serializer):
    selection = RetagSelectionSerializer()
    strategy = serializers.ChoiceField(choices=Strategy.choices)
    config = RetagConfigSerializer(required=False)
    dry_run = serializers.BooleanField(default=True, help_text="Store a diff report to review instead of applying.")
    use_batch = serializers.BooleanField(default=False, help_text="LLM requests through the Batch API.")

    def selection_data(self) -> dict[str, Any]:
        return dict(self.validated_data["selection"])

    def config_data(self) -> dict[str, Any]:
        return dict(self.validated_data.get("config") or {})


class RetagProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    done = serializers.IntegerField()
    changed = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    pending = serializers.IntegerField()
    percent = serializers.IntegerField()


class RetagJobSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=JobStatus.choices)
    progress = serializers.SerializerMethodField()
    summary = serializers.JSONField(help_text="Recorded when the job ends; `notification`: the webhook's outcome.")
    report_url = serializers.SerializerMethodField()

    class Meta:
        model = RetagJob
        fields = (
            "id",
            "status",
            "selection",
            "strategy",
            "config",
            "dry_run",
            "use_batch",
            "schedule_name",
            "progress",
            "summary",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "applied_at",
            "rolled_back_at",
            "cancelled_at",
            "report_url",
        )
        read_only_fields = fields

    @extend_schema_field(RetagProgressSerializer)
    def get_progress(self, job: RetagJob) -> dict[str, Any]:
        data: dict[str, Any] = self.context["progress"][job.pk].as_dict()
        return data

    @extend_schema_field(OpenApiTypes.STR)
    def get_report_url(self, job: RetagJob) -> str:
        """The diff report page, for staff in a browser."""
        return reverse("retagging:detail", kwargs={"job_id": job.pk})
