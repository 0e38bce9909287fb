"""Staff see a provider's sign-in settings read-only, as the environment sets them, never the
client secret itself."""

import pytest

from apps.providers.models import Provider

pytestmark = pytest.mark.django_db

SECRET = "very-secret-client-secret-1234"


def google_settings(**overrides):
    values = {
        "client_id": "1234-portal.apps.googleusercontent.com",
        "client_secret": SECRET,
        "authorize_url": "https://accounts.google.com/o/oauth2/v2/auth",
        "token_url": "https://oauth2.googleapis.com/token",
        "jwks_url": "https://www.googleapis.com/oauth2/v3/certs",
        "issuer": "https://accounts.google.com",
        "scopes": "openid email https://mail.google.com/",
    }
    return {**values, **overrides}


def test_the_admin_shows_the_sign_in_settings_but_never_the_secret(admin_client, settings):
    settings.IMAPCOPY_OAUTH = {**settings.IMAPCOPY_OAUTH, "google": google_settings()}
    gmail = Provider.objects.get(slug="gmail")
    assert gmail.oauth_service == "google"
    page = admin_client.get(f"/admin/providers/provider/{gmail.pk}/change/").content.decode()
    assert "1234-portal.apps.googleusercontent.com" in page
    assert "https://mail.google.com/" in page
    assert "Customers see “Sign in with …”." in page
    assert SECRET not in page
    # Read-only: the form has no field for them.
    assert 'name="oauth_settings"' not in page and 'name="client_secret"' not in page


def test_a_service_without_its_secret_is_said_to_be_off(admin_client, settings):
    settings.IMAPCOPY_OAUTH = {**settings.IMAPCOPY_OAUTH, "google": google_settings(client_secret="")}
    gmail = Provider.objects.get(slug="gmail")
    page = admin_client.get(f"/admin/providers/provider/{gmail.pk}/change/").content.decode()
    assert "Not offered to customers until the client id and secret are set." in page
