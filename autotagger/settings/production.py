from autotagger.settings.base import *  # noqa: F403
from autotagger.settings.base import databases_from_env, env

DEBUG = False
DATABASES = databases_from_env(allow_embedded=False)
REDIS_URL = env("REDIS_URL")
CELERY_BROKER_URL = REDIS_URL
# Secrets have no defaults in production: a missing one stops the process at start-up.
SECRET_KEY = env("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
if env.bool("DJANGO_BEHIND_PROXY", default=False):
    # Only trust X-Forwarded-Proto when a proxy that sets it stands in front; otherwise clients could fake it.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
