from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView

from autotagger.api.schema import SchemaView
from autotagger.handlers import api_not_found
from autotagger.views import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("healthz", healthz, name="healthz"),
    path("api/v1/", include("feedback.api.urls")),
    path("api/v1/", include("tagging.api.urls")),
    path("api/v1/", include("taxonomy.api.urls")),
    path("api/v1/", include("retagging.api.urls")),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    re_path(r"^api/(?P<rest>.*)$", api_not_found, name="api-not-found"),
    path("evaluations/", include("feedback.urls")),
    path("prompts/", include("feedback.version_urls")),
    path("feedback/reviewers/", include("feedback.reviewer_urls")),
    path("", include("feedback.review_urls")),
    path("feedback/", include("feedback.feedback_urls")),
    path("retag/", include("retagging.urls")),
    path("", include("tagging.urls")),
]

handler404 = "autotagger.handlers.not_found"
handler500 = "autotagger.handlers.server_error"
