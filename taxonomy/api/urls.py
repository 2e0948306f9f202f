from django.urls import path

from taxonomy.api.views import CategoryDetailView, CategoryListView

urlpatterns = [
    path("categories", CategoryListView.as_view(), name="api-categories"),
    path("categories/<slug:slug>", CategoryDetailView.as_view(), name="api-category"),
]
