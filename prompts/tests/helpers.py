"""What the prompts tests share: a call to the gateway and what the ledger recorded."""

from __future__ import annotations

import importlib
import socket
from typing import Any

from django.apps import apps

from autotagger.redis import redis_client
from prompts.gateway import chat_json, spend_keys_prefix
from prompts.models import DEFAULT_TAGGING_PROMPT, LLMCall, LLMSource, PromptVersion
from prompts.sources import LLMSourceConfig
from prompts.tests.conftest import LLMSourceFactory
from prompts.tests.openai_server import OpenAIServer

SCHEMA = {
    "type": "object",
    "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["tags"],
    "additionalProperties": False,
}


def ask(source: LLMSourceConfig, **kwargs: Any) -> Any:
    params: dict[str, Any] = {
        "system": "You tag recipes.",
        "user": "Spaghetti carbonara",
        "schema": SCHEMA,
        "schema_name": "recipe_tags",
        "want_logprobs": False,
        "prompt_version": "tags-v1",
    }
    return chat_json(source=source, **{**params, **kwargs})


def outcomes() -> list[str]:
    return list(LLMCall.objects.order_by("id").values_list("outcome", flat=True))


def db_source(server: OpenAIServer, **fields: Any) -> LLMSource:
    """A source staff added in admin, at the test server."""
    return LLMSourceFactory(base_url=server.url, **fields)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spending_cap_reset() -> None:
    """Forget the day's spend and reservations kept in Redis (seeded again from this test's ledger): they
    outlive the test's database transaction."""
    client = redis_client()
    for key in client.scan_iter(match=f"{spend_keys_prefix()}:*", count=1000):
        client.delete(key)


def default_tagging_prompt() -> PromptVersion:
    """The active version of the default tagging prompt, made by its own migration's code (prompts 0008) when a
    transactional test emptied the database."""
    migration = importlib.import_module("prompts.migrations.0008_default_tagging_prompt")
    migration.default_prompt_create(apps, None)
    return PromptVersion.objects.select_related("prompt").get(prompt__name=DEFAULT_TAGGING_PROMPT, is_active=True)
