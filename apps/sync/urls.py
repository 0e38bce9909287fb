from django.urls import path

from apps.sync import views

app_name = "sync"
urlpatterns = [
    path("", views.home, name="home"),
]
