import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autotagger.settings.development")

application = get_wsgi_application()

from autotagger.checks import checks_enforce  # noqa: E402 - needs the apps that get_wsgi_application loads
from autotagger.middleware import CharsetGuard  # noqa: E402

application = CharsetGuard(application)  # type: ignore[assignment]

checks_enforce()

# Load the embedding model at worker start, not on the first request.
if os.environ.get("AUTOTAGGER_PRELOAD_MODEL", "1") == "1":
    from autotagger.embeddings import embeddings_warm_up

    embeddings_warm_up()
