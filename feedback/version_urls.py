from django.urls import path

from feedback import version_views

app_name = "prompt_versions"

# Under /prompts/, next to the playground's /prompts/playground/ (tagging.urls): only numeric ids here.
urlpatterns = [
    path("versions/<int:version_id>/", version_views.prompt_version_detail, name="detail"),
    path("<int:prompt_id>/versions/", version_views.prompt_versions, name="overview"),
]
