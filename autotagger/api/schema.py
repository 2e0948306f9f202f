from __future__ import annotations

from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable: invalid, unknown_category, not_authenticated, ...")
    message = serializers.CharField(help_text="What went wrong, in a sentence.")
    details = serializers.JSONField(help_text="Field errors or the offending values.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
