"""IMAPCopy settings, read from environment variables (see the README's table).

A local run needs no configuration: SQLite and generated secrets under var/, a local Redis.
With DEBUG off, every secret must be given explicitly.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from portal.envconfig import (
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_networks,
    env_ports,
    env_slug,
    env_str,
    env_url,
    local_secret,
    random_secret_key,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("IMAPCOPY_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", True)

# --- Secrets -------------------------------------------------------------------------
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = local_secret(VAR_DIR / "secret_key", random_secret_key)

# Fernet keys for account passwords, newest first. Passwords are encrypted with the first
# key and decrypted with any of them, so a new key can be prepended and old ciphertexts
# re-encrypted with `manage.py rotate_credential_keys` before the old key is dropped.
CREDENTIAL_KEYS = env_list("CREDENTIAL_KEYS")
if not CREDENTIAL_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured("CREDENTIAL_KEYS must be set when DEBUG is off.")
    CREDENTIAL_KEYS = [local_secret(VAR_DIR / "credential_key", lambda: Fernet.generate_key().decode())]
for _key in CREDENTIAL_KEYS:
    try:
        Fernet(_key)
    except ValueError:
        raise ImproperlyConfigured(
            "CREDENTIAL_KEYS must be comma-separated Fernet keys (32 url-safe base64-encoded bytes each)."
        ) from None

# --- Hosts and URLs ------------------------------------------------------------------
SITE_URL = env_url("SITE_URL", "http://127.0.0.1:8000", schemes=("http", "https")).rstrip("/")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", urlsplit(SITE_URL).hostname])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [SITE_URL])

# --- Applications ----------------------------------------------------------------------
INSTALLED_APPS = [
    "portal.apps.PortalAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    "apps.providers",
    "apps.mailboxes",
    "apps.sync",
    "apps.selfservice",
    "apps.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "portal.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "portal.middleware.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_url(
            "DATABASE_URL",
            f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
            schemes=("sqlite", "postgres", "postgresql", "pgsql"),
        ),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, for the test database too: RQ workers fork or run as separate
    # processes, and they must see the rows the test wrote.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
    # The web server and the workers write at once: wait for the lock instead of failing, take
    # it when a transaction starts (no upgrade deadlocks), and let readers go on during writes
    # (WAL). synchronous=NORMAL skips an fsync per commit; a power cut can lose the last
    # checkpoints, which the engine reconciles without duplicates.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=20,
        transaction_mode="IMMEDIATE",
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Queues ---------------------------------------------------------------------------
REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss", "unix"))
# Several installations (production and staging, two brands) may share one Redis: each names its
# queues, cache keys and RQ job ids after itself, so that no worker runs another's jobs.
# At most 24 characters: RQ job ids ("<instance>-sync-<job>-<random>") must fit in 64.
IMAPCOPY_INSTANCE = env_slug("IMAPCOPY_INSTANCE", "imapcopy", max_length=24)
COPY_QUEUE = f"{IMAPCOPY_INSTANCE}-copies"
CHECK_QUEUE = f"{IMAPCOPY_INSTANCE}-checks"
COPY_JOB_TIMEOUT = env_int("COPY_JOB_TIMEOUT", 48 * 3600, minimum=60)
RQ_QUEUES = {
    COPY_QUEUE: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": COPY_JOB_TIMEOUT},
    CHECK_QUEUE: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 60},
}
RQ = {"COMMIT_MODE": "on_db_commit"}
# Rate limits and other short-lived counters are shared by every web process through Redis.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": IMAPCOPY_INSTANCE,
    }
}

# --- The copy service ----------------------------------------------------------------------
# Hosts a customer may connect to although they resolve to private, loopback or link-local
# addresses. Empty in production; tests and the local demo allow 127.0.0.0/8.
IMAPCOPY_ALLOWED_PRIVATE_NETWORKS = env_networks("IMAPCOPY_ALLOWED_PRIVATE_NETWORKS")
IMAPCOPY_ERROR_BUDGET = env_int("IMAPCOPY_ERROR_BUDGET", 100, minimum=0)
IMAPCOPY_MAX_MESSAGE_BYTES = env_int("IMAPCOPY_MAX_MESSAGE_BYTES", 0, minimum=0) or None
IMAPCOPY_BATCH_BYTES = env_int("IMAPCOPY_BATCH_BYTES", 2 * 1024 * 1024, minimum=64 * 1024)
# Reader/writer pairs per copy, each with its own connection to each server (a provider's
# max_connections caps it). Servers spend much of a copy waiting on their disks (an fsync per
# stored message): six pairs beat two by ~50% on the benchmark even with both servers on 2 cores.
IMAPCOPY_PARALLELISM = env_int("IMAPCOPY_PARALLELISM", 6, minimum=1, maximum=16)
# The same into a destination without LITERAL+ (Gmail): each message there waits a round trip for
# the server's "+", so a connection idles most of the time across real distances.
IMAPCOPY_PARALLELISM_ROUND_TRIP_APPENDS = env_int("IMAPCOPY_PARALLELISM_ROUND_TRIP_APPENDS", 10, minimum=1, maximum=16)
# An extra CA certificate (PEM) to trust for IMAP servers, e.g. the demo's self-signed one.
IMAPCOPY_CA_FILE = env_str("IMAPCOPY_CA_FILE") or None
# Unencrypted IMAP sends the customer's password in clear: refused unless this is on.
IMAPCOPY_ALLOW_PLAINTEXT_IMAP = env_bool("IMAPCOPY_ALLOW_PLAINTEXT_IMAP", False)
CONNECTION_TEST_SECONDS = env_int("CONNECTION_TEST_SECONDS", 15, minimum=3, maximum=60)
# Connection tests run on the checks queue, never in a web worker: a silent server would hold one
# for the whole test. The page waits for the result; past these limits a customer is asked to wait.
# Tests in flight per client (address, or its /64), and connection tests waiting in the queue in all.
IMAPCOPY_CONNECTION_TESTS_PER_CLIENT = env_int("IMAPCOPY_CONNECTION_TESTS_PER_CLIENT", 2, minimum=1)
IMAPCOPY_CONNECTION_TEST_QUEUE_LIMIT = env_int("IMAPCOPY_CONNECTION_TEST_QUEUE_LIMIT", 50, minimum=1)
# Queued or running copies that one client may have started.
IMAPCOPY_ACTIVE_JOBS_PER_CLIENT = env_int("IMAPCOPY_ACTIVE_JOBS_PER_CLIENT", 3, minimum=1)
# The ports a customer may give for an IMAP server, so that the form is no port scanner; "any" lifts
# the limit (tests and the demo, whose servers listen on other ports).
IMAPCOPY_IMAP_PORTS = env_ports("IMAPCOPY_IMAP_PORTS", [143, 993])
# A copy gives up waiting for an IMAP server's answer (or for room to send) after this long
# and reconnects; a server that keeps not answering fails the job with the code `timeout`.
IMAPCOPY_IMAP_TIMEOUT_SECONDS = env_int("IMAPCOPY_IMAP_TIMEOUT_SECONDS", 60, minimum=1, maximum=3600)
# A copy whose server stops answering after it had connected (a restart, a network outage)
# keeps trying to reconnect this long before the job fails with a network error code.
IMAPCOPY_NETWORK_PATIENCE_SECONDS = env_int("IMAPCOPY_NETWORK_PATIENCE_SECONDS", 300, minimum=0)
# Accounts entered in the form but never used by a job are erased after this long.
IMAPCOPY_ABANDONED_ACCOUNT_MINUTES = env_int("IMAPCOPY_ABANDONED_ACCOUNT_MINUTES", 60, minimum=5)
# Copy speed assumed for the time estimate shown after a connection test.
IMAPCOPY_ESTIMATE_MESSAGES_PER_SECOND = env_int("IMAPCOPY_ESTIMATE_MESSAGES_PER_SECOND", 300, minimum=1)
IMAPCOPY_ESTIMATE_BYTES_PER_SECOND = env_int("IMAPCOPY_ESTIMATE_BYTES_PER_SECOND", 10_000_000, minimum=1)
# A running copy writes a heartbeat every few seconds; recovery re-queues a run silent for
# longer than this (its worker died), and fails a job after this many runs in a row died
# without copying anything (runs killed in the middle of a copy, by deploys, do not count).
IMAPCOPY_HEARTBEAT_STALE_SECONDS = env_int("IMAPCOPY_HEARTBEAT_STALE_SECONDS", 180, minimum=5)
IMAPCOPY_MAX_RUNS = env_int("IMAPCOPY_MAX_RUNS", 5, minimum=1)
# A copy waiting on a silent server goes without a heartbeat for about one IMAP timeout, plus up
# to a few seconds to close its connections (all at once). A shorter stale limit would take that
# live run for a dead one and start a second copy beside it.
if IMAPCOPY_HEARTBEAT_STALE_SECONDS < 3 * IMAPCOPY_IMAP_TIMEOUT_SECONDS:
    raise ImproperlyConfigured(
        "IMAPCOPY_HEARTBEAT_STALE_SECONDS must be at least 3 times IMAPCOPY_IMAP_TIMEOUT_SECONDS, got "
        f"{IMAPCOPY_HEARTBEAT_STALE_SECONDS} and {IMAPCOPY_IMAP_TIMEOUT_SECONDS}"
    )
# Jobs that ended longer ago than this are deleted by `manage.py purge_jobs`.
IMAPCOPY_RETENTION_DAYS = env_int("IMAPCOPY_RETENTION_DAYS", 90, minimum=1)
# Every rate limit of the portal (connection tests, status lookups, admin log-ins) is
# multiplied by this. 1 in production; load benchmarks from one address raise it.
IMAPCOPY_RATE_LIMIT_FACTOR = env_int("IMAPCOPY_RATE_LIMIT_FACTOR", 1, minimum=1)
# How long the private status link of a job stays valid.
IMAPCOPY_STATUS_LINK_DAYS = env_int("IMAPCOPY_STATUS_LINK_DAYS", 30, minimum=1)
# How long the link that confirms a report address (one the destination login does not prove)
# stays valid; the private status page can send a new one.
IMAPCOPY_REPORT_CONFIRMATION_DAYS = env_int("IMAPCOPY_REPORT_CONFIRMATION_DAYS", 7, minimum=1)
# Failed and cancelled jobs keep their credentials this long so staff can retry them;
# finished jobs erase them at once.
IMAPCOPY_CREDENTIAL_GRACE_HOURS = env_int("IMAPCOPY_CREDENTIAL_GRACE_HOURS", 24, minimum=0)
# A customer may tick "keep my passwords" on the Synchronize step: the job then keeps them
# (encrypted) this many days, to copy the mail that arrived since ("Copy new mail again"). 0: never.
IMAPCOPY_DELTA_KEEP_DAYS = env_int("IMAPCOPY_DELTA_KEEP_DAYS", 7, minimum=0, maximum=90)

# --- Sign in with Google or Microsoft (OAuth2) --------------------------------------------
# A service whose client id and secret are set offers "Sign in with ..." on the presets marked
# with it (Gmail, Outlook / Microsoft 365); without them, passwords only. The README says how to
# register the application at Google and at Microsoft Entra and which redirect URIs to give.
# Plain-http endpoints only for the tests' authorization server on loopback.
IMAPCOPY_OAUTH_ALLOW_HTTP = env_bool("IMAPCOPY_OAUTH_ALLOW_HTTP", False)
_oauth_schemes = ("https", "http") if IMAPCOPY_OAUTH_ALLOW_HTTP else ("https",)
if IMAPCOPY_OAUTH_ALLOW_HTTP:
    # Authlib refuses plain-http token endpoints on its own unless told so: one switch for both.
    os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
# "common" (any work or personal account), "organizations", "consumers", a tenant id or domain.
IMAPCOPY_MICROSOFT_TENANT = env_str("IMAPCOPY_MICROSOFT_TENANT", "common")
if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,99}", IMAPCOPY_MICROSOFT_TENANT):
    raise ImproperlyConfigured(
        f"IMAPCOPY_MICROSOFT_TENANT must be a tenant id, a domain or common, got {IMAPCOPY_MICROSOFT_TENANT!r}"
    )
_microsoft = f"https://login.microsoftonline.com/{IMAPCOPY_MICROSOFT_TENANT}"
IMAPCOPY_OAUTH = {
    "google": {
        "client_id": env_str("IMAPCOPY_GOOGLE_CLIENT_ID"),
        "client_secret": env_str("IMAPCOPY_GOOGLE_CLIENT_SECRET"),
        "authorize_url": env_url(
            "IMAPCOPY_GOOGLE_AUTHORIZE_URL", "https://accounts.google.com/o/oauth2/v2/auth", schemes=_oauth_schemes
        ),
        "token_url": env_url(
            "IMAPCOPY_GOOGLE_TOKEN_URL", "https://oauth2.googleapis.com/token", schemes=_oauth_schemes
        ),
        "jwks_url": env_url(
            "IMAPCOPY_GOOGLE_JWKS_URL", "https://www.googleapis.com/oauth2/v3/certs", schemes=_oauth_schemes
        ),
        "issuer": env_str("IMAPCOPY_GOOGLE_ISSUER", "https://accounts.google.com"),
        "scopes": env_str("IMAPCOPY_GOOGLE_SCOPES", "openid email https://mail.google.com/"),
    },
    "microsoft": {
        "client_id": env_str("IMAPCOPY_MICROSOFT_CLIENT_ID"),
        "client_secret": env_str("IMAPCOPY_MICROSOFT_CLIENT_SECRET"),
        "authorize_url": env_url(
            "IMAPCOPY_MICROSOFT_AUTHORIZE_URL", f"{_microsoft}/oauth2/v2.0/authorize", schemes=_oauth_schemes
        ),
        "token_url": env_url("IMAPCOPY_MICROSOFT_TOKEN_URL", f"{_microsoft}/oauth2/v2.0/token", schemes=_oauth_schemes),
        "jwks_url": env_url("IMAPCOPY_MICROSOFT_JWKS_URL", f"{_microsoft}/discovery/v2.0/keys", schemes=_oauth_schemes),
        # Multi-tenant: each account's ID token names its own tenant ({tid}).
        "issuer": env_str("IMAPCOPY_MICROSOFT_ISSUER", "https://login.microsoftonline.com/{tid}/v2.0"),
        "scopes": env_str(
            "IMAPCOPY_MICROSOFT_SCOPES",
            "openid email offline_access https://outlook.office.com/IMAP.AccessAsUser.All",
        ),
        "admin_consent_url": env_url(
            "IMAPCOPY_MICROSOFT_ADMIN_CONSENT_URL", f"{_microsoft}/adminconsent", schemes=_oauth_schemes
        ),
    },
}

# --- Email ----------------------------------------------------------------------------------
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if env_str("EMAIL_HOST")
    else "django.core.mail.backends.filebased.EmailBackend",
)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(VAR_DIR / "sent-mail"))
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are mutually exclusive.")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "IMAPCopy <noreply@localhost>")
SERVER_EMAIL = env_str("SERVER_EMAIL", DEFAULT_FROM_EMAIL)
ADMINS = [("Admin", address) for address in env_list("ADMINS")]

# --- Internationalization ----------------------------------------------------------------------
LANGUAGES = [
    ("en", _("English")),
    ("fr", _("French")),
    ("pt", _("Portuguese")),
    ("es", _("Spanish")),
    ("de", _("German")),
    ("it", _("Italian")),
]
LANGUAGE_CODE = env_choice("LANGUAGE_CODE", "en", [code for code, _name in LANGUAGES])
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_TZ = True

# --- Static files -------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = DEBUG  # a local run serves static files without collectstatic
if DEBUG:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request otherwise
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Security ----------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 2 * 3600, minimum=60)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("USE_X_FORWARDED_PROTO", False):
    # Only behind a proxy that sets the header itself; otherwise clients could forge it.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The reverse proxies in front of the portal ("10.0.0.5,2001:db8::/64"). Rate limits key on the
# client: behind a proxy REMOTE_ADDR is the proxy's, shared by every customer, so a request from
# one of these takes the right-most X-Forwarded-For hop that is not itself one of these. Empty:
# X-Forwarded-For is ignored, as anybody can write it.
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Logging --------------------------------------------------------------------------------------
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR"])
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"require_debug_false": {"()": "django.utils.log.RequireDebugFalse"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        # Error reports to ADMINS; Django's filter hides POSTed passwords and the local
        # variables of functions marked with sensitive_variables.
        "mail_admins": {
            "class": "django.utils.log.AdminEmailHandler",
            "level": "ERROR",
            "filters": ["require_debug_false"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.request": {"handlers": ["console", "mail_admins"], "level": "ERROR", "propagate": False},
        "rq.worker": {"level": LOG_LEVEL},
    },
}
