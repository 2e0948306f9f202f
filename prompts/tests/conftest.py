"""Factories for the prompts models (LLM sources and the calls made to them)."""

from __future__ import annotations

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from prompts.models import LLMCall, LLMCallOutcome, LLMSource, Prompt, PromptPurpose


class LLMSourceFactory(DjangoModelFactory):
    """A source staff added in admin, already probed (`probed_at=None`: never probed); point it at the test
    server with `base_url=openai_server.url`."""

    class Meta:
        model = LLMSource

    name = "openrouter"
    base_url = "http://127.0.0.1:9/v1"
    model = "db-model"
    probed_at = factory.LazyFunction(timezone.now)


class LLMCallFactory(DjangoModelFactory):
    """A call made today that succeeded."""

    class Meta:
        model = LLMCall

    source = "default"
    model = "m"
    outcome = LLMCallOutcome.OK


class PromptFactory(DjangoModelFactory):
    """A tagging prompt with no versions yet (add them with prompts.services.prompt_version_create)."""

    class Meta:
        model = Prompt

    name = factory.Sequence(lambda n: f"tagging-{n}")
    purpose = PromptPurpose.TAGGING
