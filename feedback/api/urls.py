from django.urls import path

from feedback.api.views import FeedbackListView, RecipeImportView, RunFeedbackView

urlpatterns = [
    path("recipes/import", RecipeImportView.as_view(), name="api-recipes-import"),
    path("runs/<int:run_id>/feedback", RunFeedbackView.as_view(), name="api-run-feedback"),
    path("feedback", FeedbackListView.as_view(), name="api-feedback"),
]
