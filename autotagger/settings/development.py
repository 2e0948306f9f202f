from autotagger.settings.base import *  # noqa: F403
from autotagger.settings.base import databases_from_env, env, redis_cache, redis_url_from_env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
DATABASES = databases_from_env(allow_embedded=True)
REDIS_URL = redis_url_from_env("REDIS_URL", allow_embedded=True, db=0)
CELERY_BROKER_URL = REDIS_URL
CACHES = {"default": redis_cache(REDIS_URL)}
# Plain http to a local model server is fine on this machine (never in production).
LLM_ALLOWED_HOSTS = env.list("LLM_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "::1"])
