import os

from autotagger.settings.base import *  # noqa: F403
from autotagger.settings.base import BASE_DIR, LOGGING, databases_from_env, env, redis_cache, redis_url_from_env

DATABASES = databases_from_env(allow_embedded=True)
# One test database per pytest process, so two runs at once (two terminals, a helper) never collide;
# conftest.py drops those left behind by runs that were killed.
DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests use their own Redis database and queue so that a running `make run` worker never takes their tasks.
# The test worker (conftest.py) is given this resolved URL, so it uses the same server.
REDIS_URL = redis_url_from_env("TEST_REDIS_URL", allow_embedded=True, db=15)
CELERY_BROKER_URL = REDIS_URL
# Request counts under a prefix of this process, in the tests' Redis database, so runs never share them.
CACHES = {"default": redis_cache(REDIS_URL, key_prefix=f"autotagger-test-{os.getpid()}")}
# Per pytest process too; the test worker is told the name of its run's queue.
CELERY_TASK_DEFAULT_QUEUE = env("AUTOTAGGER_TEST_QUEUE", default=f"autotagger-test-{os.getpid()}")
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
LOG_FORMAT = "text"
LOGGING = {**LOGGING, "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "text"}}}
# Plain http to a local model server is fine on this machine (never in production).
LLM_ALLOWED_HOSTS = env.list("LLM_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "::1"])
# The test worker polls a Batch API batch a second apart, so that a test waits seconds for one, not minutes.
LLM_BATCH_POLL_SECONDS = env.int("LLM_BATCH_POLL_SECONDS", default=1)
# Fast mode is off unless a test asks for it (the `fast_mode` fixture distils once per run): a model distilled
# into the data folder by `make run` must not change what the other tests fit and tag.
# The tests re-tag the same few demo recipes hundreds of times: caching their vectors saves encoding them each time
# (the vectors are the same either way).
EMBEDDING_CACHE_BULK = True
EMBEDDING_FAST_MODEL_DIR = env("TEST_EMBEDDING_FAST_MODEL_DIR", default=str(BASE_DIR / ".data" / "test-no-fast-model"))
