"""The model sources a call can use: staff-editable `LLMSource` rows by name, plus "default" built from the
LLM_BASE_URL, LLM_MODEL and LLM_API_KEY settings (a row named "default" replaces it). A row holds the NAME
of the environment variable with its key, never the key."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.conf import settings

from prompts.models import LLMSource

DEFAULT_SOURCE_NAME = "default"


class LLMError(Exception):
    """An LLM call that could not produce a usable reply; `code`, `status` and `retryable` say how to report
    it and whether trying again later may help."""

    code: ClassVar[str] = "llm_error"
    status: ClassVar[int] = 502
    default_retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.retryable = self.default_retryable if retryable is None else retryable


class LLMNotConfigured(LLMError):
    code = "llm_not_configured"
    status = 503


@dataclass(frozen=True)
class LLMSourceConfig:
    name: str
    base_url: str
    model: str
    api_key: str = field(repr=False)  # a secret: kept out of logs and tracebacks
    timeout_seconds: float
    max_concurrency: int
    price_input_per_1k: float
    price_output_per_1k: float
    supports_json_schema: bool


def _settings_source_configured() -> bool:
    return bool(settings.LLM_BASE_URL) and bool(settings.LLM_MODEL)


def llm_sources_available() -> list[str]:
    """Names `llm_source_get` accepts: active `LLMSource` rows, and "default" when the settings define it
    and no row of that name (active or not) replaces it."""
    rows = dict(LLMSource.objects.values_list("name", "active"))
    names = {name for name, active in rows.items() if active}
    if DEFAULT_SOURCE_NAME not in rows and _settings_source_configured():
        names.add(DEFAULT_SOURCE_NAME)
    return sorted(names)


def llm_source_get(*, name: str | None = None) -> LLMSourceConfig:
    """The source called `name` (None: LLM_DEFAULT_SOURCE); LLMNotConfigured says what is missing."""
    name = name or str(settings.LLM_DEFAULT_SOURCE)
    row = LLMSource.objects.filter(name=name).first()
    if row is not None:
        if not row.active:
            raise LLMNotConfigured(
                f"The LLM source {name!r} is inactive; available sources: {_names_for_message()}",
                details={"source": name, "available": llm_sources_available()},
            )
        return _config_from_row(row)
    if name == DEFAULT_SOURCE_NAME:
        return _config_from_settings()
    available = llm_sources_available()
    raise LLMNotConfigured(
        f"Unknown LLM source {name!r}; available sources: {_names_for_message()}",
        details={"source": name, "available": available},
    )


def _names_for_message() -> str:
    return ", ".join(llm_sources_available()) or "none (set LLM_BASE_URL and LLM_MODEL, or add one in admin)"


def _config_from_row(row: LLMSource) -> LLMSourceConfig:
    api_key = ""
    if row.api_key_env:
        api_key = os.environ.get(row.api_key_env, "")
        if not api_key:
            raise LLMNotConfigured(
                f"The LLM source {row.name!r} reads its API key from the environment variable "
                f"{row.api_key_env}, which is not set in this process",
                details={"source": row.name, "missing_env": row.api_key_env},
            )
    return LLMSourceConfig(
        name=row.name,
        base_url=row.base_url,
        model=row.model,
        api_key=api_key,
        timeout_seconds=float(row.timeout_seconds),
        max_concurrency=int(row.max_concurrency),
        price_input_per_1k=float(row.price_input_per_1k),
        price_output_per_1k=float(row.price_output_per_1k),
        supports_json_schema=row.supports_json_schema,
    )


def _config_from_settings() -> LLMSourceConfig:
    missing = [name for name in ("LLM_BASE_URL", "LLM_MODEL") if not getattr(settings, name)]
    if missing:
        raise LLMNotConfigured(
            f"The default LLM source is not configured: set {' and '.join(missing)} "
            f"(or add an LLM source named {DEFAULT_SOURCE_NAME!r} in admin)",
            details={"source": DEFAULT_SOURCE_NAME, "missing_settings": missing},
        )
    return LLMSourceConfig(
        name=DEFAULT_SOURCE_NAME,
        base_url=str(settings.LLM_BASE_URL),
        model=str(settings.LLM_MODEL),
        api_key=str(settings.LLM_API_KEY),
        timeout_seconds=float(settings.LLM_TIMEOUT_SECONDS),
        max_concurrency=int(settings.LLM_MAX_CONCURRENCY),
        price_input_per_1k=float(settings.LLM_PRICE_INPUT_PER_1K),
        price_output_per_1k=float(settings.LLM_PRICE_OUTPUT_PER_1K),
        supports_json_schema=bool(settings.LLM_SUPPORTS_JSON_SCHEMA),
    )
