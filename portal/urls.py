from django.conf.urls.i18n import i18n_patterns
from django.contrib import admin
from django.urls import include, path

# The admin modules load with the URLconf, not at start-up (portal/apps.py).
admin.autodiscover()

urlpatterns = [
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
]
urlpatterns += i18n_patterns(
    path("", include("apps.selfservice.urls")),
    prefix_default_language=False,
)
