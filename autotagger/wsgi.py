import os

from django.core.wsgi import get_wsgi_application

# A server or worker started without saying otherwise is a deployment: production settings, which refuse to
# start without their secrets. `make run` (Procfile) and the tests name their settings module.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autotagger.settings.production")

application = get_wsgi_application()

from autotagger.checks import checks_enforce  # noqa: E402 - needs the apps that get_wsgi_application loads
from autotagger.middleware import CharsetGuard  # noqa: E402

application = CharsetGuard(application)  # type: ignore[assignment]

checks_enforce()

# Load the embedding model at worker start, not on the first request.
if os.environ.get("AUTOTAGGER_PRELOAD_MODEL", "1") == "1":
    from autotagger.embeddings import embeddings_warm_up

    embeddings_warm_up()
