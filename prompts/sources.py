"""The model sources a call can use: `LLMSource` rows (superusers edit them) by name, plus "default" built
from the LLM_BASE_URL and LLM_MODEL settings and the AUTOTAGGER_LLM_KEY_DEFAULT variable (a row named
"default" replaces it). A row holds the NAME of the environment variable with its key, never the key; only
AUTOTAGGER_LLM_KEY_... variables are read (prompts.endpoints).

Each source knows what it supports (`LLMCapabilities`): which request modes (`ResponseMode`) it accepts,
tools, log-probabilities. A row records them (probed, or set by staff); the settings source takes them from
LLM_RESPONSE_FORMAT and keeps what it learns (a probe, a refused mode) in this process.
"""

from __future__ import annotations

import enum
import os
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar

from django.conf import settings
from django.utils import timezone

from prompts.endpoints import DEFAULT_SOURCE_KEY_ENV, api_key_env_problem
from prompts.models import LLMSource

DEFAULT_SOURCE_NAME = "default"


class ResponseMode(enum.StrEnum):
    """How a request asks for JSON, best first: the gateway starts at the best mode a source supports and
    falls back down this list when the server refuses one."""

    JSON_SCHEMA = "json_schema"  # response_format json_schema, strict: decoded by the schema
    JSON_OBJECT_SCHEMA = "json_object_schema"  # json_object with a "schema" (llama.cpp): decoded by it
    JSON_OBJECT = "json_object"  # any JSON object; the caller validates it
    NONE = "none"  # no response_format; the prompt asks for JSON and the caller validates it


# Modes whose reply the decoder constrained by the schema: token log-probabilities describe the model's
# unconstrained distribution there, not the choice made.
CONSTRAINED_MODES = frozenset({ResponseMode.JSON_SCHEMA, ResponseMode.JSON_OBJECT_SCHEMA})
SCHEMA_MODES = CONSTRAINED_MODES

# Capability -> its LLMSource field.
CAPABILITY_FIELDS = {
    "json_schema": "supports_json_schema",
    "json_object_schema": "supports_json_object_schema",
    "json_object": "supports_json_object",
    "tools": "supports_tools",
    "logprobs": "supports_logprobs",
}


@dataclass(frozen=True)
class LLMCapabilities:
    json_schema: bool = True
    json_object_schema: bool = True
    json_object: bool = True
    tools: bool = False
    logprobs: bool = True

    def modes(self, *, schema: bool) -> tuple[ResponseMode, ...]:
        """The modes to try for a request, best first (those needing a schema only when there is one);
        always ends with NONE, which every chat endpoint accepts."""
        supported = [mode for mode in ResponseMode if mode == ResponseMode.NONE or getattr(self, mode.value)]
        return tuple(mode for mode in supported if schema or mode not in SCHEMA_MODES)

    def without(self, capability: str) -> LLMCapabilities:
        return replace(self, **{capability: False})

    def describe(self) -> str:
        return ", ".join(f"{name} {'yes' if getattr(self, name) else 'no'}" for name in CAPABILITY_FIELDS)

    @classmethod
    def from_response_format(cls, value: str) -> LLMCapabilities:
        """The best mode `value` (a ResponseMode) and every mode below it; tools unknown (no)."""
        best = list(ResponseMode).index(ResponseMode(value))
        below = {mode.value for mode in list(ResponseMode)[best:]}
        return cls(**{mode.value: mode.value in below for mode in ResponseMode if mode != ResponseMode.NONE})


class LLMError(Exception):
    """An LLM call that could not produce a usable reply; `code`, `status` and `retryable` say how to report
    it and whether trying again later may help."""

    code: ClassVar[str] = "llm_error"
    status: ClassVar[int] = 502
    default_retryable: ClassVar[bool] = False
    # The fixed message of errors that describe a provider's answer (prompts.gateway): callers see it, never
    # what the provider said.
    default_message: ClassVar[str] = "The language model call failed."

    def __init__(
        self, message: str | None = None, *, details: dict[str, Any] | None = None, retryable: bool | None = None
    ) -> None:
        message = self.default_message if message is None else message
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
    capabilities: LLMCapabilities = LLMCapabilities()
    # False: never probed; the gateway probes before its first call.
    probed: bool = True
    # Staff set the capabilities: a probe records what it saw and changes none of them.
    capabilities_from_staff: bool = False
    # (stated confidence, observed precision) points measured on gold labels; empty: none yet.
    confidence_calibration: tuple[tuple[float, float], ...] = ()
    # Offers the Batch API (prompts.batches); the settings source when LLM_SUPPORTS_BATCH is set.
    supports_batch: bool = False
    row_id: int | None = None  # the LLMSource row; None for the settings source
    api_key_env: str = ""  # the variable the key was read from; "" for none

    @property
    def supports_json_schema(self) -> bool:
        """Whether the source takes the reply's schema in some form (strict json_schema, or json_object
        with a schema), so that a caller builds one; the gateway picks the form."""
        return self.capabilities.json_schema or self.capabilities.json_object_schema


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
    """The source called `name` (None: LLM_DEFAULT_SOURCE); LLMNotConfigured says what is missing.

    An unknown or inactive name is refused without naming the other sources: a caller may only learn
    whether the name it asked for exists (staff see them all in admin)."""
    name = name or str(settings.LLM_DEFAULT_SOURCE)
    row = LLMSource.objects.filter(name=name).first()
    if row is not None:
        if not row.active:
            raise LLMNotConfigured(f"The LLM source {name!r} is inactive.", details={"source": name})
        return _config_from_row(row)
    if name == DEFAULT_SOURCE_NAME:
        return _config_from_settings()
    raise LLMNotConfigured(f"There is no LLM source named {name!r}.", details={"source": name})


def _config_from_row(row: LLMSource) -> LLMSourceConfig:
    api_key = ""
    if row.api_key_env:
        if api_key_env_problem(row.api_key_env):
            # The constraint keeps such a name out of the table; read nothing if it got in anyway.
            raise LLMNotConfigured(
                f"The LLM source {row.name!r} names an environment variable that may not hold an LLM key.",
                details={"source": row.name},
            )
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
        capabilities=LLMCapabilities(**{name: getattr(row, field) for name, field in CAPABILITY_FIELDS.items()}),
        probed=row.probed_at is not None,
        capabilities_from_staff=row.capabilities_from_staff,
        confidence_calibration=_calibration_table(row.confidence_calibration),
        supports_batch=row.supports_batch,
        row_id=row.pk,
        api_key_env=row.api_key_env,
    )


def _calibration_table(value: Any) -> tuple[tuple[float, float], ...]:
    """The valid pairs of a stored table (admin validates it; a hand-edited row may not be)."""
    pairs = []
    for pair in value if isinstance(value, list) else []:
        if isinstance(pair, list | tuple) and len(pair) == 2:
            stated, observed = pair
            if all(isinstance(x, int | float) and not isinstance(x, bool) and 0 <= x <= 1 for x in pair):
                pairs.append((float(stated), float(observed)))
    return tuple(pairs)


def _config_from_settings() -> LLMSourceConfig:
    missing = [name for name in ("LLM_BASE_URL", "LLM_MODEL") if not getattr(settings, name)]
    if missing:
        raise LLMNotConfigured(
            f"The default LLM source is not configured: set {' and '.join(missing)} "
            f"(or add an LLM source named {DEFAULT_SOURCE_NAME!r} in admin)",
            details={"source": DEFAULT_SOURCE_NAME, "missing_settings": missing},
        )
    response_format = settings_response_format()
    auto = response_format == "auto"
    if not auto and response_format not in set(ResponseMode):
        raise LLMNotConfigured(
            f"LLM_RESPONSE_FORMAT is {response_format!r}; use auto, {', '.join(ResponseMode)}",
            details={"source": DEFAULT_SOURCE_NAME, "invalid_settings": ["LLM_RESPONSE_FORMAT"]},
        )
    config = LLMSourceConfig(
        name=DEFAULT_SOURCE_NAME,
        capabilities=LLMCapabilities() if auto else LLMCapabilities.from_response_format(response_format),
        probed=not auto,
        base_url=str(settings.LLM_BASE_URL),
        model=str(settings.LLM_MODEL),
        api_key=str(settings.LLM_API_KEY),
        timeout_seconds=float(settings.LLM_TIMEOUT_SECONDS),
        max_concurrency=int(settings.LLM_MAX_CONCURRENCY),
        price_input_per_1k=float(settings.LLM_PRICE_INPUT_PER_1K),
        price_output_per_1k=float(settings.LLM_PRICE_OUTPUT_PER_1K),
        supports_batch=bool(settings.LLM_SUPPORTS_BATCH),
        api_key_env=DEFAULT_SOURCE_KEY_ENV if settings.LLM_API_KEY else "",
    )
    with _settings_learned_lock:
        learned = _settings_learned.get(_settings_key(config))
    if learned is not None:
        return replace(config, capabilities=learned.capabilities, probed=learned.probed_at is not None or config.probed)
    return config


def settings_response_format() -> str:
    """LLM_RESPONSE_FORMAT ("auto": probe at first use), or what LLM_SUPPORTS_JSON_SCHEMA says when unset."""
    value = str(settings.LLM_RESPONSE_FORMAT or "").strip().lower()
    if value:
        return value
    return ResponseMode.JSON_SCHEMA.value if settings.LLM_SUPPORTS_JSON_SCHEMA else ResponseMode.JSON_OBJECT.value


# What the settings source learned in this process (a probe, a refused mode), by base URL, model and
# configured format: there is no row to keep it on, and a changed setting starts afresh.
@dataclass(frozen=True)
class _Learned:
    capabilities: LLMCapabilities
    probed_at: datetime | None = None
    summary: str = ""


_settings_learned: dict[tuple[str, str, str], _Learned] = {}
_settings_learned_lock = threading.Lock()


def _settings_key(source: LLMSourceConfig) -> tuple[str, str, str]:
    return (source.base_url, source.model, settings_response_format())


def settings_source_probe(source: LLMSourceConfig) -> tuple[datetime | None, str]:
    """When the settings source was last probed in this process, and what the probe saw."""
    with _settings_learned_lock:
        learned = _settings_learned.get(_settings_key(source))
    return (learned.probed_at, learned.summary) if learned is not None else (None, "")


def llm_source_capability_lost(*, source: LLMSourceConfig, capability: str) -> LLMSourceConfig:
    """The server refused `capability` (a mode or "logprobs"): `source` without it, remembered so that the
    next call starts right (on the row, even when staff set the capabilities: a refusal is proof; for the
    settings source, in this process)."""
    if not getattr(source.capabilities, capability):
        return source
    updated = replace(source, capabilities=source.capabilities.without(capability))
    if source.row_id is not None:
        LLMSource.objects.filter(pk=source.row_id).update(
            **{CAPABILITY_FIELDS[capability]: False}, updated_at=timezone.now()
        )
    else:
        with _settings_learned_lock:
            previous = _settings_learned.get(_settings_key(source))
            _settings_learned[_settings_key(source)] = _Learned(
                capabilities=updated.capabilities,
                probed_at=previous.probed_at if previous else None,
                summary=previous.summary if previous else "",
            )
    return updated


def llm_source_probed(
    *, source: LLMSourceConfig, seen: LLMCapabilities, summary: str, at: datetime | None
) -> LLMSourceConfig:
    """Record a probe of `source`: what it saw (`summary`, kept on the row or in this process) and, unless
    staff set the capabilities, `seen` as the capabilities. `at` None: the probe could not finish (the
    server did not answer), so the source counts as never probed and is probed again at its next use."""
    capabilities = source.capabilities if source.capabilities_from_staff else seen
    updated = replace(source, capabilities=capabilities, probed=at is not None or source.probed)
    if source.row_id is not None:
        fields: dict[str, Any] = {"probe_summary": summary[: LLMSource._meta.get_field("probe_summary").max_length]}
        if at is not None:
            fields["probed_at"] = at
            fields.update({CAPABILITY_FIELDS[name]: getattr(capabilities, name) for name in CAPABILITY_FIELDS})
        LLMSource.objects.filter(pk=source.row_id).update(**fields, updated_at=timezone.now())
    else:
        with _settings_learned_lock:
            _settings_learned[_settings_key(source)] = _Learned(
                capabilities=capabilities if at is not None else source.capabilities, probed_at=at, summary=summary
            )
    return updated
