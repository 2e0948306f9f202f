from autotagger.settings.base import *  # noqa: F403
from autotagger.settings.base import databases_from_env, env, redis_url_from_env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
DATABASES = databases_from_env(allow_embedded=True)
REDIS_URL = redis_url_from_env("REDIS_URL", allow_embedded=True, db=0)
CELERY_BROKER_URL = REDIS_URL
