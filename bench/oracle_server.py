"""Local OpenAI-compatible chat servers that answer tagging prompts by rule, for measuring the llm and hybrid
strategies without a model: an **oracle** that answers each recipe's gold tags among those the request
allows (the best any model could do with that question), and a **careless** one that picks the first
allowed tag of every category.

They listen on 127.0.0.1 (real sockets: the service talks to them with the real `openai` client through
its gateway), read the question as a model would (the recipe between <recipe> and </recipe>, the allowed
tags from the request's JSON schema or, without one, from the prompt's listing), and answer in whatever
form the request asks: a JSON object (under a strict json_schema, json_object with a schema, or plain),
or a forced tool call. Usage counts the prompt's tokens with `count_tokens`, so a run's recorded tokens
are the prompt's size. Requests they cannot read as a tagging question (a capability probe) get the
simplest object their schema allows.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RECIPE = re.compile(r"<recipe>\n(?P<body>.*?)\n</recipe>", re.DOTALL)
CATEGORY_HEADER = re.compile(r'^Category "(?P<slug>[^"]+)" \(.*; at most (?P<k>\d+)\)')
TAG_LINE = re.compile(r"^- (?P<slug>\S+)(?: — |$)")
# A category in brief (the hybrid's shortlist): `slug[ (Name)], at most k: tag[ (Name)], tag, ...`.
CATEGORY_LINE = re.compile(r"^(?P<slug>[\w-]+)(?: \([^)]*\))?, at most (?P<k>\d+): (?P<tags>.*)$")
BRIEF_TAG = re.compile(r"(?:^|, )(?P<slug>[\w-]+)(?: \([^)]*\))?")
SPACES = re.compile(r"\s+")

# Category slug -> allowed tag slugs, in the order the request lists them.
Allowed = dict[str, list[str]]
# What a server answers: category slug -> chosen tag slugs, from the recipe read in the prompt (None when
# there is none) and the allowed tags.
Answer = Callable[["PromptRecipe | None", Allowed], dict[str, list[str]]]


def recipe_key(title: str, ingredients: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """How a recipe is recognised in a prompt: its title and ingredients, whitespace collapsed, lowercased
    (the prompt shortens long lines, so only each line's first 60 characters count)."""

    def clean(text: str) -> str:
        return SPACES.sub(" ", text).strip().lower()[:60]

    return clean(title), tuple(clean(i) for i in ingredients if clean(i))


class PromptRecipe:
    """The recipe a prompt asks about, as written between <recipe> and </recipe>."""

    def __init__(self, title: str, ingredients: list[str]) -> None:
        self.title = title
        self.ingredients = ingredients

    @classmethod
    def parse(cls, prompt: str) -> PromptRecipe | None:
        found = list(RECIPE.finditer(prompt))
        if not found:
            return None
        lines = found[-1].group("body").splitlines()
        if not lines or not lines[0].startswith("Title: "):
            return None
        title = lines[0].removeprefix("Title: ")
        ingredients: list[str] = []
        for line in lines[1:]:
            if line == "Instructions:":
                break
            if line.startswith("- ") and not line.startswith("- (and "):
                ingredients.append(line[2:])
        return cls(title, ingredients)

    def key(self) -> tuple[str, tuple[str, ...]]:
        return recipe_key(self.title, self.ingredients)


def oracle_answer(gold: Mapping[tuple[str, tuple[str, ...]], Mapping[str, Collection[str]]]) -> Answer:
    """The gold tags of the recipe (looked up by `recipe_key`), each category restricted to the allowed
    tags; nothing for a recipe it does not know."""
    titles: dict[str, list[tuple[str, ...]]] = {}
    for title, ingredients in gold:
        titles.setdefault(title, []).append(ingredients)

    def answer(recipe: PromptRecipe | None, allowed: Allowed) -> dict[str, list[str]]:
        if recipe is None:
            return {}
        title, ingredients = recipe.key()
        labels = gold.get((title, ingredients))
        if labels is None:
            # The prompt may list fewer ingredients than the recipe has (a cap): the longest shared prefix wins.
            candidates = titles.get(title, [])
            best = max(candidates, key=lambda known: _shared_prefix(known, ingredients), default=None)
            labels = gold.get((title, best)) if best is not None else None
        if labels is None:
            return {}
        return {slug: [t for t in labels.get(slug, ()) if t in set(tags)] for slug, tags in allowed.items()}

    return answer


def _shared_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def careless_answer(recipe: PromptRecipe | None, allowed: Allowed) -> dict[str, list[str]]:
    """The first allowed tag of every category, whatever the recipe."""
    return {slug: tags[:1] for slug, tags in allowed.items()}


def allowed_tags(request: Mapping[str, Any], prompt: str) -> tuple[Allowed, dict[str, Any] | None]:
    """The allowed tags per category and the reply's schema: from the request's schema when it has one
    (response_format json_schema, json_object with a "schema", or a forced tool's parameters), else from
    the prompt's listing (`Category "slug" (...; at most k)` then `- slug — name` lines, or in brief one line
    per category, `slug, at most k: tag, tag (Name)`)."""
    schema = _request_schema(request)
    allowed: Allowed = {}
    if schema is not None:
        for slug, spec in (schema.get("properties") or {}).items():
            items = spec.get("items", {}) if isinstance(spec, dict) else {}
            tag = (items.get("properties") or {}).get("tag", {}) if isinstance(items, dict) else {}
            enum = tag.get("enum") if isinstance(tag, dict) else None
            if isinstance(enum, list):
                allowed[slug] = [str(value) for value in enum]
        if allowed:
            return allowed, schema
    current: str | None = None
    for line in prompt.splitlines():
        brief = CATEGORY_LINE.match(line)
        if brief:
            allowed[brief.group("slug")] = [m.group("slug") for m in BRIEF_TAG.finditer(brief.group("tags"))]
            current = None
            continue
        header = CATEGORY_HEADER.match(line)
        if header:
            current = header.group("slug")
            allowed[current] = []
            continue
        tag = TAG_LINE.match(line)
        if tag and current is not None:
            allowed[current].append(tag.group("slug"))
        elif not line.strip() or not line.startswith("- "):
            current = None
    return allowed, schema


def _request_schema(request: Mapping[str, Any]) -> dict[str, Any] | None:
    response_format = request.get("response_format") or {}
    if isinstance(response_format, dict):
        if isinstance(response_format.get("json_schema"), dict):
            schema = response_format["json_schema"].get("schema")
            if isinstance(schema, dict):
                return schema
        if isinstance(response_format.get("schema"), dict):
            return dict(response_format["schema"])
    tool = _forced_tool(request)
    if tool is not None and isinstance(tool.get("parameters"), dict):
        return dict(tool["parameters"])
    return None


def _forced_tool(request: Mapping[str, Any]) -> dict[str, Any] | None:
    tools = request.get("tools") or []
    if not tools:
        return None
    choice = request.get("tool_choice")
    wanted = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    for tool in tools:
        function = tool.get("function", {}) if isinstance(tool, dict) else {}
        if wanted is None or function.get("name") == wanted:
            return dict(function)
    return None


def simplest_instance(schema: Mapping[str, Any]) -> Any:
    """The simplest value `schema` allows: required properties only, empty arrays, first enum values."""
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: simplest_instance(properties.get(name, {})) for name in schema.get("required") or properties}
    if kind == "array":
        return []
    if kind in ("number", "integer"):
        return 1
    if kind == "boolean":
        return True
    return ""


def reply_content(chosen: Mapping[str, Sequence[str]], allowed: Allowed) -> dict[str, Any]:
    """The reply object: one array per allowed category of {"tag", "reason", "confidence"}."""
    return {
        slug: [{"tag": tag, "reason": "rule", "confidence": 1.0} for tag in chosen.get(slug, [])] for slug in allowed
    }


def prompt_parts(messages: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """A tagging prompt cut into its parts: the system message, the tag listing (with the answer keys), the
    few-shot examples, and the fenced recipe with the closing request."""
    system = "\n".join(str(m["content"]) for m in messages if m.get("role") == "system")
    user = "\n".join(str(m["content"]) for m in messages if m.get("role") == "user")
    head, fence, recipe = user.partition("<recipe>\n")
    if not fence:
        return {"system": system, "other": user}
    listing, marker, examples = head.partition("Examples of recipes tagged by people")
    return {"system": system, "tag listing": listing, "examples": marker + examples, "recipe": fence + recipe}


class TaggingServer:
    """An OpenAI-compatible `/v1/chat/completions` on 127.0.0.1 that answers with `answer`. `requests` counts
    the requests served, `prompt_tokens` the prompt tokens it reported."""

    def __init__(self, *, answer: Answer, count_tokens: Callable[[str], int], model: str = "rule-model") -> None:
        self.answer = answer
        self.count_tokens = count_tokens
        self.model = model
        self.requests = 0
        self.prompt_tokens = 0
        # Prompt tokens by part of the prompt (prompt_parts): what a strategy spends them on.
        self.part_tokens: dict[str, int] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="tagging-server", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> TaggingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def completion(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The chat completion answering `request`."""
        messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
        texts = [m["content"] for m in messages if isinstance(m.get("content"), str)]
        prompt = "\n".join(m["content"] for m in messages if m.get("role") == "user" and isinstance(m["content"], str))
        allowed, schema = allowed_tags(request, prompt)
        recipe = PromptRecipe.parse(prompt)
        if allowed:
            content: Any = reply_content(self.answer(recipe, allowed), allowed)
        else:
            content = simplest_instance(schema) if schema is not None else {}
        text = json.dumps(content)
        prompt_tokens = sum(self.count_tokens(t) for t in texts)
        parts = {name: self.count_tokens(text) for name, text in prompt_parts(messages).items()}
        if schema is not None:
            # Sent beside the messages and not in the usage reported here; a provider may count it.
            parts["schema (not counted)"] = self.count_tokens(json.dumps(schema))
        with self._lock:
            self.requests += 1
            self.prompt_tokens += prompt_tokens
            for name, tokens in parts.items():
                self.part_tokens[name] = self.part_tokens.get(name, 0) + tokens
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        finish = "stop"
        tool = _forced_tool(request)
        if tool is not None:
            call = {
                "id": f"call-{next(self._ids)}",
                "type": "function",
                "function": {"name": tool.get("name", ""), "arguments": text},
            }
            message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}
            finish = "tool_calls"
        completion_tokens = self.count_tokens(text)
        return {
            "id": f"chatcmpl-rule-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model") or self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"No route {self.path}", "type": "invalid_request_error"}})
                    return
                try:
                    request = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"error": {"message": "The body is not JSON", "type": "invalid_request_error"}})
                    return
                self._send(200, server.completion(request))

            def _send(self, status: int, body: Any) -> None:
                payload = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
