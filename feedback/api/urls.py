from django.urls import path

from feedback.api.views import RecipeImportView

urlpatterns = [
    path("recipes/import", RecipeImportView.as_view(), name="api-recipes-import"),
]
