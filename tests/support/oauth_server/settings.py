"""Settings of the tests' OAuth2 / OpenID Connect authorization server: django-oauth-toolkit in a
project of its own, run by gunicorn on loopback (see server.py).  Everything comes from the
environment that server.py sets; the database is a SQLite file in the server's directory."""

import os
from pathlib import Path

DIRECTORY = Path(os.environ["OAUTH_TEST_DIR"])
SECRET_KEY = os.environ["OAUTH_TEST_SECRET"]
# The test-only endpoints (users, consent, revocation) want this value in a header.
CONTROL_SECRET = os.environ["OAUTH_TEST_CONTROL_SECRET"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.support.oauth_server.urls"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [Path(__file__).resolve().parent / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DIRECTORY / "oauth.sqlite3",
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
LOGIN_URL = "/accounts/login/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # test users only: fast
SESSION_COOKIE_NAME = "oauth_test_session"  # the portal runs on 127.0.0.1 too: keep cookies apart
CSRF_COOKIE_NAME = "oauth_test_csrftoken"
OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": int(os.environ.get("OAUTH_TEST_ACCESS_TOKEN_SECONDS", "20")),
    "REFRESH_TOKEN_EXPIRE_SECONDS": 24 * 3600,
    # Like Microsoft: every refresh returns a new refresh token and retires the old one.
    "ROTATE_REFRESH_TOKEN": True,
    "PKCE_REQUIRED": True,
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": (DIRECTORY / "oidc.key").read_text(),
    "OAUTH2_VALIDATOR_CLASS": "tests.support.oauth_server.validator.EmailClaimValidator",
    "SCOPES": {
        "openid": "Sign you in",
        "email": "See your email address",
        "mail": "Read, copy and store your mail over IMAP",
        "offline_access": "Keep access while you are away",
        "introspection": "Check tokens",
    },
    "DEFAULT_SCOPES": ["openid"],
}
LOGGING = {"version": 1, "disable_existing_loggers": False}
