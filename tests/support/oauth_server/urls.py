from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("o/authorize/", views.TenantAwareAuthorizationView.as_view(), name="authorize"),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("test/applications/", views.register_application),
    path("test/users/", views.create_user),
    path("test/tokens/", views.issue_tokens),
    path("test/revoke/", views.revoke_consent),
    path("test/admin-consent-required/", views.require_admin_consent),
]
