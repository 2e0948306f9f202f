from autotagger.settings.base import *  # noqa: F403
from autotagger.settings.base import databases_from_env, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
DATABASES = databases_from_env(allow_embedded=True)
