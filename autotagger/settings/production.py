from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from autotagger.settings.base import *  # noqa: F403
from autotagger.settings.base import EMAIL_HOST, databases_from_env, env, redis_cache, redis_url_from_env


def required_from_env(name: str) -> str:
    value: str = env(name, default="")
    if not value.strip():
        raise ImproperlyConfigured(f"{name} is required in production (see .env.example).")
    return value


DEBUG = False
DATABASES = databases_from_env(allow_embedded=False)
REDIS_URL = redis_url_from_env("REDIS_URL", allow_embedded=False)
if not urlsplit(REDIS_URL).password:
    # Anyone who reaches an open Redis can queue tasks for the worker to run.
    raise ImproperlyConfigured("REDIS_URL must include the Redis password (redis://:PASSWORD@HOST:6379/0).")
CELERY_BROKER_URL = REDIS_URL
CACHES = {"default": redis_cache(REDIS_URL)}
# Secrets have no defaults in production: a missing or empty one stops the process at start-up.
SECRET_KEY = required_from_env("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = [host.strip() for host in required_from_env("DJANGO_ALLOWED_HOSTS").split(",") if host.strip()]
# Password-reset mail (linked on the login page) needs a mail server: SMTP unless EMAIL_BACKEND says otherwise.
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
if EMAIL_BACKEND == "django.core.mail.backends.smtp.EmailBackend" and not EMAIL_HOST:
    raise ImproperlyConfigured(
        "EMAIL_HOST is required in production (the SMTP server that sends password-reset mail); "
        "or set EMAIL_BACKEND to another backend explicitly."
    )

# --- HTTPS --------------------------------------------------------------------------------------
# Secure by default; a plain-HTTP deployment (docker-compose on localhost) turns these off explicitly.
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# The container health check calls /healthz over plain HTTP from inside the container.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
if env.bool("DJANGO_BEHIND_PROXY", default=False):
    # Only trust the proxy's header when a proxy that sets it (and strips it from clients) stands in front;
    # otherwise clients could fake HTTPS. With it, a request the proxy received over HTTPS is not redirected.
    _proxy_header = env("DJANGO_PROXY_SSL_HEADER", default="X-Forwarded-Proto")
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
