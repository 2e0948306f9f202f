"""Where an LLM source may send its requests and which environment variables may hold its key.

The key of a source comes only from a variable named AUTOTAGGER_LLM_KEY_<SUFFIX>: whoever edits a source
can choose among the LLM keys the deployment set, never point it at REDIS_URL or DJANGO_SECRET_KEY. A
base URL must be https, or plain http to a host on LLM_ALLOWED_HOSTS (loopback in development and tests):
a key is never sent in clear over the network. Both are checked when a source is saved (model validation,
plus a database constraint for the key's name) and again by the gateway before every request, so a row
edited in the database directly is still not called.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.conf import settings

API_KEY_ENV_PREFIX = "AUTOTAGGER_LLM_KEY_"
# The database constraint (prompts.models) uses the same pattern.
API_KEY_ENV_PATTERN = rf"^{API_KEY_ENV_PREFIX}[A-Z0-9_]+$"
# The variable of the "default" source that the LLM_* settings define.
DEFAULT_SOURCE_KEY_ENV = f"{API_KEY_ENV_PREFIX}DEFAULT"


def api_key_env_problem(name: str) -> str | None:
    """Why `name` may not hold an LLM key, or None ("" is fine: an endpoint without a key)."""
    if not name or re.fullmatch(API_KEY_ENV_PATTERN, name):
        return None
    return (
        f"The API key must come from an environment variable whose name starts with {API_KEY_ENV_PREFIX} "
        f"(capital letters, digits, underscores), e.g. {API_KEY_ENV_PREFIX}OPENAI; {name!r} is not one."
    )


def base_url_problem(url: str) -> str | None:
    """Why an LLM source may not send requests to `url`, or None."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return f"{url!r} is not a URL."
    if parts.scheme not in ("http", "https") or not host:
        return f"{url!r} is not an http(s) URL with a host."
    if parts.username or parts.password:
        return "The base URL must not carry credentials; name the key's environment variable instead."
    if parts.scheme == "https":
        return None
    allowed = {str(name).lower().strip("[]") for name in settings.LLM_ALLOWED_HOSTS}
    if host in allowed:
        return None
    return f"The base URL must use https, or plain http only to a host on LLM_ALLOWED_HOSTS; {host!r} is not on it."
