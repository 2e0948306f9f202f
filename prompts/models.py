"""Model sources (OpenAI-compatible chat endpoints staff manage) and the ledger of every call made to one."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from prompts.endpoints import API_KEY_ENV_PATTERN, API_KEY_ENV_PREFIX, base_url_problem


def validate_confidence_calibration(value: Any) -> None:
    """A list of [stated, observed] pairs of numbers in [0, 1]."""
    if not isinstance(value, list):
        raise ValidationError("Enter a list of [stated, observed] pairs, e.g. [[0.5, 0.3], [0.9, 0.7]].")
    for pair in value:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(x, int | float) and not isinstance(x, bool) and 0 <= x <= 1 for x in pair)
        ):
            raise ValidationError(f"{pair!r} is not a [stated, observed] pair of numbers between 0 and 1.")


class LLMSource(models.Model):
    """An OpenAI-compatible chat endpoint that staff can add or retune without a deploy.

    The API key is never stored: `api_key_env` names the environment variable that holds it, so the
    secret stays in the deployment's environment and a database dump leaks nothing. Only variables named
    AUTOTAGGER_LLM_KEY_... qualify, and `base_url` must be https or an allowed host (prompts.endpoints).
    """

    name = models.SlugField(
        max_length=50,
        unique=True,
        help_text='How code and tagging configs refer to this source. "default" replaces the LLM_* settings.',
    )
    base_url = models.CharField(
        max_length=500,
        help_text=(
            "The API's base URL, e.g. https://api.openai.com/v1: https, or plain http only to a host on "
            "LLM_ALLOWED_HOSTS (loopback in development)."
        ),
    )
    model = models.CharField(max_length=200)
    api_key_env = models.CharField(
        "API key environment variable",
        max_length=100,
        blank=True,
        validators=[
            RegexValidator(
                API_KEY_ENV_PATTERN,
                f"Enter the NAME of an environment variable starting with {API_KEY_ENV_PREFIX} (capital letters, "
                f"digits, underscores), e.g. {API_KEY_ENV_PREFIX}OPENAI.",
            )
        ],
        help_text=(
            f"The NAME of the environment variable that holds the API key (e.g. {API_KEY_ENV_PREFIX}OPENAI), never "
            f"the key itself; only names starting with {API_KEY_ENV_PREFIX} are accepted. It must be set in the web "
            "and worker processes. Leave blank for an endpoint without a key."
        ),
    )
    timeout_seconds = models.FloatField(default=30.0, help_text="Timeout of one request, in seconds.")
    max_concurrency = models.PositiveSmallIntegerField(
        default=4, help_text="Requests in flight at once to this source, across all processes."
    )
    price_input_per_1k = models.DecimalField(
        max_digits=12, decimal_places=6, default=0, help_text="USD per 1,000 input (prompt) tokens."
    )
    price_output_per_1k = models.DecimalField(
        max_digits=12, decimal_places=6, default=0, help_text="USD per 1,000 output (completion) tokens."
    )
    # What the endpoint supports, found by the probe (prompts.gateway.llm_source_probe) when the source is
    # saved in admin or first used, lowered by the gateway when the server refuses a request format.
    supports_json_schema = models.BooleanField(
        "Strict json_schema",
        default=True,
        help_text='Accepts response_format {"type": "json_schema", "strict": true} and decodes by the schema.',
    )
    supports_json_object_schema = models.BooleanField(
        "json_object with a schema",
        default=True,
        help_text='Accepts response_format {"type": "json_object", "schema": ...} and decodes by it (llama.cpp).',
    )
    supports_json_object = models.BooleanField(
        "Plain json_object", default=True, help_text='Accepts response_format {"type": "json_object"}.'
    )
    supports_tools = models.BooleanField(
        "Tools (function calling)", default=False, help_text="Answers a forced tool choice with a tool call."
    )
    supports_logprobs = models.BooleanField(
        "Log-probabilities", default=True, help_text="Returns the reply's token log-probabilities when asked."
    )
    supports_batch = models.BooleanField(
        "Batch API",
        default=False,
        help_text=(
            "Offers OpenAI's Batch API (/v1/files and /v1/batches): large re-tagging jobs may go through it at half "
            "price, with results within 24 hours. Set by staff: the probe does not check it."
        ),
    )
    capabilities_from_staff = models.BooleanField(
        "Keep these capabilities",
        default=False,
        help_text=(
            "Set by staff: a probe only records what it saw and leaves the capabilities above as they are. "
            "Changing a capability here ticks it; untick it to let the probe decide."
        ),
    )
    probed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the capabilities were last probed; never probed: at first use."
    )
    probe_summary = models.CharField(max_length=500, blank=True, help_text="What the last probe saw.")
    confidence_calibration = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_confidence_calibration],
        help_text=(
            "[stated, observed precision] pairs, each in [0, 1], measured on gold labels: a confidence the "
            "model states is mapped through them (piecewise linear). Empty: used as stated."
        ),
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "LLM source"
        constraints = [
            models.CheckConstraint(
                condition=Q(base_url__startswith="http://") | Q(base_url__startswith="https://"),
                name="prompts_llm_source_base_url_http",
            ),
            models.CheckConstraint(condition=~Q(model=""), name="prompts_llm_source_model_not_empty"),
            models.CheckConstraint(condition=Q(timeout_seconds__gt=0), name="prompts_llm_source_timeout_positive"),
            models.CheckConstraint(condition=Q(max_concurrency__gte=1), name="prompts_llm_source_concurrency_min_1"),
            models.CheckConstraint(
                condition=Q(price_input_per_1k__gte=0) & Q(price_output_per_1k__gte=0),
                name="prompts_llm_source_prices_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(api_key_env="") | Q(api_key_env__regex=API_KEY_ENV_PATTERN),
                name="prompts_llm_source_key_env_prefixed",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        problem = base_url_problem(self.base_url) if self.base_url else None
        if problem:
            raise ValidationError({"base_url": problem})


class LLMCallOutcome(models.TextChoices):
    OK = "ok", "OK"
    TIMEOUT = "timeout", "Timeout"
    CONNECTION = "connection", "Connection error"
    RATE_LIMITED = "rate_limited", "Rate limited (429)"
    SERVER_ERROR = "server_error", "Server error (5xx)"
    BAD_REPLY = "bad_reply", "Bad reply"
    REFUSED = "refused", "Refused"
    CLIENT_ERROR = "client_error", "Client error (4xx)"
    FORMAT_REFUSED = "format_refused", "Request format refused"


class LLMCall(models.Model):
    """One HTTP attempt at an LLM (a retried call leaves one row per attempt): the usage and cost ledger.

    `source` is the source's name, not a foreign key, so the ledger outlives a deleted or renamed source
    and covers the settings-defined "default" source too.
    """

    source = models.CharField(max_length=50)
    model = models.CharField(max_length=200)
    prompt_version = models.CharField(max_length=100, blank=True)
    # The tagging run the call was made for, by id: the ledger belongs to prompts, which knows nothing of
    # runs (calls from the playground or a judge have none), and it outlives a deleted run.
    run_id = models.BigIntegerField(null=True, blank=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.FloatField(default=0.0)
    cost = models.FloatField(default=0.0, help_text="USD, from the source's prices at the time of the call.")
    outcome = models.CharField(max_length=20, choices=LLMCallOutcome.choices)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "LLM call"
        constraints = [
            models.CheckConstraint(condition=Q(cost__gte=0), name="prompts_llm_call_cost_not_negative"),
            models.CheckConstraint(condition=Q(latency_ms__gte=0), name="prompts_llm_call_latency_not_negative"),
            models.CheckConstraint(
                condition=Q(outcome__in=LLMCallOutcome.values), name="prompts_llm_call_outcome_valid"
            ),
        ]
        indexes = [
            # The daily spend cap sums today's cost before every call; admin totals group by day and source.
            models.Index(fields=["created_at", "source"], name="prompts_llm_call_day_source"),
            models.Index(fields=["run_id"], name="prompts_llm_call_run"),
        ]

    def __str__(self) -> str:
        return f"{self.source}/{self.model} {self.outcome} at {self.created_at:%Y-%m-%d %H:%M:%S}"


# The prompt the tagger uses: the active version of the prompt of this name (data migration
# 0008_default_tagging_prompt makes its version 1 from the built-in prompt).
DEFAULT_TAGGING_PROMPT = "tagging-default"
# The prompt the hybrid strategy uses (data migration 0011_hybrid_tagging_prompt makes its version 1): its model
# only chooses among a shortlist, so it is asked more briefly than the llm strategy's.
HYBRID_TAGGING_PROMPT = "tagging-hybrid"
# The prompt the LLM judge uses (data migration 0009_default_judging_prompt makes its version 1).
DEFAULT_JUDGING_PROMPT = "judging-default"


class PromptPurpose(models.TextChoices):
    TAGGING = "tagging", "Tagging"
    JUDGING = "judging", "Judging"


class Prompt(models.Model):
    """A named prompt whose wording lives in immutable versions, exactly one of them active."""

    # Short enough that "<name> v<number>" fits the ledger's and the evaluation runs' prompt_version (100).
    name = models.SlugField(max_length=80, unique=True)
    purpose = models.CharField(max_length=20, choices=PromptPurpose.choices, default=PromptPurpose.TAGGING)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(purpose__in=PromptPurpose.values), name="prompts_prompt_purpose_valid"),
        ]

    def __str__(self) -> str:
        return self.name


class PromptVersion(models.Model):
    """One wording of a prompt, never changed once saved (a PostgreSQL trigger refuses updates to its
    templates, number or prompt; prompts.services.prompt_version_create saves a new one instead). Only
    `is_active` changes, through prompts.services.prompt_version_activate."""

    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    system_template = models.TextField()
    user_template = models.TextField()
    notes = models.TextField(blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        help_text="The version edited.",
    )
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["prompt", "number"], name="prompts_prompt_version_number_unique"),
            models.UniqueConstraint(
                fields=["prompt"], condition=Q(is_active=True), name="prompts_prompt_version_one_active"
            ),
            models.CheckConstraint(condition=Q(number__gte=1), name="prompts_prompt_version_number_min_1"),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        """How calls and runs record the version: "tagging-default v2"."""
        return f"{self.prompt.name} v{self.number}"


class PromptActivation(models.Model):
    """A version made active: by whom, when, and which one it replaced (a rollback is one too)."""

    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="activations")
    version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="activations")
    previous = models.ForeignKey(
        PromptVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="activations_replaced"
    )
    is_rollback = models.BooleanField(default=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["prompt", "created_at"], name="prompts_activation_prompt_at")]

    def __str__(self) -> str:
        return f"{self.version} activated at {self.created_at:%Y-%m-%d %H:%M:%S}"
