"""The query string read through a serializer, as a view reads its body."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.request import Request


def query_validate(*, request: Request, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
    """The parameters `serializer_class` declares, validated (400 naming each bad one). A parameter given
    more than once is refused unless its field is a list: `?active=true&active=false` has no one meaning."""
    fields = serializer_class().fields
    params = request.query_params
    errors = {
        name: ["Give this parameter once."]
        for name, field in fields.items()
        if len(params.getlist(name)) > 1 and not isinstance(field, serializers.ListField)
    }
    if errors:
        raise serializers.ValidationError(errors)
    data = {
        name: params.getlist(name) if isinstance(field, serializers.ListField) else params[name]
        for name, field in fields.items()
        if name in params
    }
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
