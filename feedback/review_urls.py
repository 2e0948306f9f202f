from django.urls import path

from feedback import review_views

app_name = "review"

urlpatterns = [
    path("review/", review_views.review_queue_page, name="queue"),
    path("review/next", review_views.review_next_page, name="next"),
    path("review/bulk-accept", review_views.review_bulk_accept_page, name="bulk-accept"),
    path("review/tags", review_views.review_tag_search, name="tag-search"),
    path("recipes/<int:recipe_id>/review/", review_views.recipe_review_page, name="recipe"),
]
