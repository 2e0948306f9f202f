from django.urls import path

from tagging.api.views import (
    JobDetailView,
    RecipeDetailView,
    RecipeListView,
    RecipesTagJobView,
    RecipeStalenessView,
    RecipeTagView,
    RunDetailView,
    RunJudgeView,
    TagView,
)

urlpatterns = [
    path("tag", TagView.as_view(), name="api-tag"),
    path("recipes", RecipeListView.as_view(), name="api-recipes"),
    path("recipes/tag", RecipesTagJobView.as_view(), name="api-recipes-tag-batch"),
    path("recipes/staleness", RecipeStalenessView.as_view(), name="api-recipes-staleness"),
    path("jobs/<int:job_id>", JobDetailView.as_view(), name="api-job"),
    path("recipes/<int:recipe_id>", RecipeDetailView.as_view(), name="api-recipe"),
    path("recipes/<int:recipe_id>/tag", RecipeTagView.as_view(), name="api-recipe-tag"),
    path("runs/<int:run_id>", RunDetailView.as_view(), name="api-run"),
    path("runs/<int:run_id>/judge", RunJudgeView.as_view(), name="api-run-judge"),
]
